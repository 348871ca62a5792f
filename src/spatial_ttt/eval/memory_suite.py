"""Exact-match scoring of the memory task suite (spatial_ttt.data.memory_tasks) by teacher forcing.

A record's answers are scored in one forward over the whole conversation: an answer counts as correct when the
greedy (argmax) prediction of every one of its tokens, ``<|im_end|>`` included, is right. That is exactly
greedy decoding's exact match, since a greedy decoder reproduces the answer if and only if each argmax given
the correct prefix is the answer's next token; earlier answers in the conversation are the true ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.memory_tasks import FPS, FRAME_SIZE, FULL_FRAMES
from ..train.config import TrainConfig
from ..train.data import IGNORE_INDEX, SFTEncoder
from ..train.packing import pad_rows


def answer_spans(labels: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each run of labelled positions, in order: one per assistant turn."""
    mask = (labels != IGNORE_INDEX).tolist()
    spans, start = [], None
    for i, on in enumerate(mask + [False]):
        if on and start is None:
            start = i
        elif not on and start is not None:
            spans.append((start, i))
            start = None
    return spans


def exact_matches(predicted: torch.Tensor, labels: torch.Tensor) -> list[bool]:
    """Per answer: is the argmax ``predicted`` [L] (position p predicts token p + 1) right on all its tokens?"""
    # an answer's last labelled token is the newline after <|im_end|>, which the template fixes: not scored
    return [bool((predicted[s - 1 : e - 2] == labels[s : e - 1]).all()) for s, e in answer_spans(labels)]


@torch.no_grad()
def score_records(
    model: Any, encoder: SFTEncoder, records: Iterable[dict], device: torch.device | str = "cpu", batch_size: int = 1
) -> list[dict]:
    """One row per answer: record id, stream length, task, correct. With ``batch_size`` > 1, records of similar
    length run as right-padded rows of one forward (the same predictions: the model is causal)."""
    records = list(records)
    examples = [encoder.encode(rec) for rec in records]
    order = sorted(range(len(records)), key=lambda i: examples[i]["input_ids"].numel())
    matches: dict[int, list[bool]] = {}
    for first in range(0, len(order), batch_size):
        batch = order[first : first + batch_size]
        inputs, _ = pad_rows([examples[i] for i in batch])
        predicted = model(**{k: v.to(device) for k, v in inputs.items()}).logits.argmax(-1).cpu()
        for row, i in enumerate(batch):
            matches[i] = exact_matches(predicted[row], examples[i]["labels"])
    rows = []
    for i, rec in enumerate(records):
        for task, ok in zip(rec["tasks"], matches[i], strict=True):
            rows.append({"id": rec["id"], "length": rec["length"], "task": task, "correct": ok})
    return rows


def accuracy_table(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """{length: {task: accuracy, "all": accuracy}} from score rows."""
    hits: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for r in rows:
        hits[(r["length"], r["task"])].append(r["correct"])
        hits[(r["length"], "all")].append(r["correct"])
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (length, task), values in sorted(hits.items()):
        table[length][task] = sum(values) / len(values)
    return dict(table)


@torch.no_grad()
def answer_turns(model: Any, encoder: SFTEncoder, record: dict, max_new_tokens: int = 8) -> list[str]:
    """Greedy answers to a record's questions asked one after another in one conversation, as a user would: the
    video and first question prefill the model's state, every later question continues that state (the model's
    own answers stay in the conversation)."""
    processor, tokenizer = encoder.processor, encoder.processor.tokenizer
    questions = [turn["value"] for turn in record["conversations"] if turn["from"] == "human"]
    opening = encoder.encode({**record, "conversations": [record["conversations"][0], {"from": "gpt", "value": ""}]})
    closing = len([encoder.im_end, *encoder.newline])  # the empty answer's <|im_end|>\n: dropped to leave it open
    ids = opening["input_ids"][:-closing]
    inputs: dict[str, torch.Tensor] = {"input_ids": ids[None], "mm_token_type_ids": opening["mm_token_type_ids"][:-closing][None],
                                       "pixel_values_videos": opening["pixel_values_videos"], "video_grid_thw": opening["video_grid_thw"]}
    state = model.new_state(1)
    answers = []
    for i, question in enumerate(questions):
        if i:  # close the previous answer (its stop token is never fed back), then the next question
            text = f"<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
            ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
            inputs = {"input_ids": ids, "mm_token_type_ids": torch.zeros_like(ids)}
            state.decoding = False
        out = model.generate(state=state, max_new_tokens=max_new_tokens, stop_token_ids=processor.stop_token_ids, **inputs)
        answers.append(processor.decode(out[0, inputs["input_ids"].shape[1] :]).strip())
    return answers


def suite_encoder(processor: Any, data_path: str | Path) -> SFTEncoder:
    """The SFT encoder with the frame settings of configs/evidence_*.yaml: every frame of a stream (written at
    1 fps), 64x96."""
    config = TrainConfig(data_path=str(data_path), num_frames=None, fps=FPS, min_frames=4, max_frames=FULL_FRAMES,
                         frame_size=list(FRAME_SIZE))
    return SFTEncoder(processor, config)
