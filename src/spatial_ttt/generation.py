"""Generation: prefill a prompt into a :class:`~spatial_ttt.state.ModelState`, then decode token by token.

Kept apart from the model (gpt-fast style): the model computes logits from tokens and a state; this module
decides what to feed it. The fast weights keep learning while decoding, by the reference's decode rule
(:mod:`spatial_ttt.ops.fast_weight_memory`), which ``ModelState.begin_decode`` switches on. How the model runs a
decoded token (a forward, or a step over static buffers replayed as a CUDA graph) is ``config.decode_kernel``
(:mod:`spatial_ttt.static_decode`); sampling stays here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .state import ModelState
from .static_decode import decode_steps


@torch.no_grad()
def generate(
    model,
    input_ids: Tensor,
    max_new_tokens: int = 16,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token_ids: list[int] | None = None,
    generator: torch.Generator | None = None,
    state: ModelState | None = None,
    **inputs: Tensor | None,
) -> Tensor:
    """Prompt + new tokens [B, S + n], HF-style. Rows that emit a stop token are padded with it afterwards;
    decoding ends when all have. With ``state``, the prompt continues that state (left at the end of generation)."""
    if max_new_tokens <= 0:
        return input_ids
    state = model.new_state(input_ids.shape[0]) if state is None else state
    logits = prefill(model, state, input_ids, decode_tokens=max_new_tokens - 1, **inputs)  # the last is not fed
    new_tokens = decode(model, state, logits, max_new_tokens, do_sample, temperature, top_k, top_p, stop_token_ids, generator)
    return torch.cat([input_ids, new_tokens], dim=1)


@torch.no_grad()
def prefill(
    model, state: ModelState, input_ids: Tensor, piece_tokens: int | None = None, decode_tokens: int = 0,
    **inputs: Tensor | None,
) -> Tensor:
    """Runs a prompt into ``state``; returns its last logits [B, V]. A video prompt longer than ``piece_tokens``
    (default ``model.config.prefill_piece``; one video per row, no images) goes in as a stream of pieces of whole
    frame groups (:func:`spatial_ttt.streaming.prefill_in_pieces`): the same numbers as one forward, at the memory
    of one piece instead of the whole prompt's activations. The anchor KV caches are told the prompt's length and the
    ``decode_tokens`` that decoding will feed (one buffer each, never grown: ModelState.plan). Pixels may stay in
    host memory (pinned, for speed): each piece's go to the device as the vision tower reaches them."""
    piece_tokens = model.config.prefill_piece if piece_tokens is None else piece_tokens
    state.plan(input_ids.shape[1] + decode_tokens)
    videos, grid = inputs.get("pixel_values_videos"), inputs.get("video_grid_thw")
    mask = inputs.get("attention_mask")
    one_video_per_row = grid is not None and len(grid) == input_ids.shape[0] and bool((grid == grid[0]).all())
    if (input_ids.shape[1] > piece_tokens and videos is not None and one_video_per_row
            and inputs.get("pixel_values") is None and (mask is None or bool(mask.all()))):
        from .streaming import prefill_in_pieces  # the stream engine builds on the model, which imports this module

        return prefill_in_pieces(model, state, input_ids, videos, grid, piece_tokens)
    return model(input_ids, state=state, logits_to_keep=1, **inputs).logits[:, -1]


@torch.no_grad()
def decode(
    model,
    state: ModelState,
    logits: Tensor,
    max_new_tokens: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_token_ids: list[int] | None = None,
    generator: torch.Generator | None = None,
    on_token: Callable[[Tensor], None] | None = None,
) -> Tensor:
    """New tokens [B, n] after a prefilled ``state`` whose last logits [B, V] are given. ``on_token`` sees each
    new token [B] as soon as it is chosen (for streaming answers; raising there stops decoding). Without stop
    tokens nothing is read back from the device per token (only whether all rows stopped needs the host), so
    the host can run ahead of the GPU."""
    state.begin_decode()
    stops: Tensor | None = None
    finished: Tensor | None = None  # rows that emitted a stop token: tracked only when there are stop tokens
    if stop_token_ids:
        stops = torch.tensor(stop_token_ids, dtype=torch.long, device=logits.device)
        finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    new_tokens: list[Tensor] = []
    # the model's step, eager or over static buffers (config.decode_kernel); the last new token is not fed
    with decode_steps(model, state, max_new_tokens - 1) as feed:
        for step in range(max_new_tokens):
            token = next_token(logits, do_sample, temperature, top_k, top_p, generator)
            if stops is not None and new_tokens:
                token = torch.where(finished, new_tokens[-1], token)  # a stopped row repeats its stop token
            new_tokens.append(token)
            if on_token is not None:
                on_token(token)
            if stops is not None:
                finished |= torch.isin(token, stops)
                if bool(finished.all()):
                    break
            if step == max_new_tokens - 1:
                break
            logits = feed(token)
    return torch.stack(new_tokens, dim=1)


def next_token(
    logits: Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Greedy or sampled (temperature, top-k, top-p) choice from logits [B, V]."""
    if not do_sample:
        return logits.argmax(dim=-1)
    if temperature <= 0:
        raise ValueError("temperature must be positive when sampling")
    logits = logits.float() / temperature
    if top_k is not None and top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
