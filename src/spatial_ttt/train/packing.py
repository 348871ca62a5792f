"""The loss of a packed sample: several sequences, fast weights / conv / attention / rope restarted at each.

A pack is a list of sequences. Instead of concatenating them and teaching the model to reset at boundaries,
each sequence runs through the model on its own (a fresh forward with no state: fast weights start from the
parameters, the spatial conv only sees that sequence's video, attention is causal within the sequence and
rope positions start at 0), and the token-level cross-entropies are summed and divided once by the number of
answer tokens in the whole pack. This is exactly the loss of a packed forward with restarts at the
boundaries, because nothing crosses a boundary in such a forward: every token's logits depend on its own
sequence only, and the pack loss is a mean over answer tokens. It wastes no compute: there is no padding and
no attention across sequences to mask out, each token is processed once, and with batch 1 per process (the
released recipe) the packed forward would do the same work in one call. Backward runs per sequence (each
part scaled by 1/N_pack), which gives the same gradient as one backward of the summed loss while holding
only one sequence's activations at a time.

With ``rows=True`` (``pack_rows`` in the config) the pack's sequences instead run as the rows of ONE forward,
right-padded to the longest: the same loss and gradient (the model is causal: a row's padding comes after its
last real token, and a TTT chunk's update only reaches later chunks), for one forward and backward per pack.
That pays when a step is bound by kernel launches, not arithmetic (small models: benchmarks/EVIDENCE.md measured
0.47 s for one 2113-token row and 0.45 s for sixteen on an H100), at the cost of the padding and of holding
every sequence's activations at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .data import IGNORE_INDEX, Example

VISUAL_KEYS = ("pixel_values_videos", "video_grid_thw")  # the model inputs besides the token rows


def answer_tokens(example: Example) -> int:
    """Tokens that count in the loss: positions p+1 with a label, predicted from position p."""
    return int((example["labels"][1:] != IGNORE_INDEX).sum())


def pad_rows(examples: list[Example], pad_id: int = 0, row_multiple: int = 1) -> tuple[dict[str, Tensor], Tensor]:
    """(model inputs with the examples as right-padded rows [B, L], labels [B, L] with IGNORE_INDEX on padding).
    Padding is text (token type 0) after each row's end; the visual inputs are concatenated in row order, which is
    the order the model assigns them to rows in. ``row_multiple``: rows of padding only are added until B is a
    multiple of it (few distinct batch shapes for kernels compiled to static shapes)."""
    length = max(ex["input_ids"].shape[-1] for ex in examples)
    blank = -len(examples) % row_multiple

    def padded(key: str, value: int) -> Tensor:
        rows = [F.pad(ex[key], (0, length - ex[key].shape[-1]), value=value) for ex in examples]
        return torch.stack(rows + [rows[0].new_full((length,), value)] * blank)

    inputs = {"input_ids": padded("input_ids", pad_id), "mm_token_type_ids": padded("mm_token_type_ids", 0)}
    for key in VISUAL_KEYS:
        parts = [ex[key] for ex in examples if key in ex]
        if parts:
            inputs[key] = torch.cat(parts)
    return inputs, padded("labels", IGNORE_INDEX)


def loss_sum(model: Any, examples: list[Example], row_multiple: int = 1) -> Tensor:
    """Summed cross-entropy (fp32) over the answer tokens of ``examples``, run as the rows of one (padded) forward;
    logits are computed only from the first position (over all rows) that predicts an answer token onwards (with
    one QA turn that is the tail of the sequence). ``row_multiple``: see :func:`pad_rows`."""
    inputs, labels = pad_rows(examples, row_multiple=row_multiple)
    length = labels.shape[-1]
    targets = (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero()
    first = int(targets[0]) if len(targets) else length - 2
    logits = model(**inputs, logits_to_keep=length - first).logits
    targets = labels[:, first + 1 :].to(logits.device)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")


def sequence_loss_sum(model: Any, example: Example) -> Tensor:
    """:func:`loss_sum` of one sequence."""
    return loss_sum(model, [example])


def pack_loss(
    model: Any,
    pack: list[Example],
    backward: Callable[[Tensor], None] | None = None,
    context: Callable[[bool], contextlib.AbstractContextManager] | None = None,
    scale: float = 1.0,
    rows: bool = False,
    row_multiple: int = 1,
) -> tuple[Tensor, int]:
    """(mean cross-entropy over all answer tokens of the pack, their number).

    With ``backward``, each sequence's part (sum_i / N * scale) is back-propagated right after its forward;
    ``context(is_last)`` wraps each forward+backward (e.g. DDP ``no_sync`` for all but the last). With ``rows``,
    the whole pack is one forward (one part), its rows padded to a multiple of ``row_multiple``."""
    total = sum(answer_tokens(ex) for ex in pack)
    denom = max(total, 1)
    loss = torch.zeros((), dtype=torch.float32)
    parts = [pack] if rows else [[example] for example in pack]
    for i, examples in enumerate(parts):
        ctx = context(i == len(parts) - 1) if context is not None else contextlib.nullcontext()
        with ctx:
            part = loss_sum(model, examples, row_multiple if rows else 1) / denom
            if backward is not None:
                backward(part * scale)
                part = part.detach()
        loss = loss.to(part.device) + part
    return loss, total
