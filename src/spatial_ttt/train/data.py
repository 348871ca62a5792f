"""SFT records -> model inputs with answer-only labels, length estimates, packing and a resumable sampler.

A record is the reference's conversation format (spec "Training data record"): ``{"video": path or [paths],
"conversations": [{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", "value": "..."}, ...]}``.
Decoding happens in :class:`PackDataset.__getitem__`, i.e. in the DataLoader's worker processes.
"""

from __future__ import annotations

import glob
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler
from transformers.video_utils import VideoMetadata

from ..video import SpatialTTTProcessor, read_video
from ..video.decode import probe
from ..video.frames import list_images
from ..video.sampling import num_sampled_frames, sample_indices
from .config import TrainConfig

IGNORE_INDEX = -100
_PLACEHOLDER = re.compile(r"(<video>|<image>)")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}

Record = dict[str, Any]
Example = dict[str, torch.Tensor]


def read_records(data_path: str | Path, patterns: Sequence[str]) -> list[Record]:
    """All records of the files matching ``patterns`` under ``data_path`` (JSONL, or a JSON list), sorted by path."""
    root = Path(data_path)
    files = sorted({Path(f) for p in patterns for f in glob.glob(str(root / p), recursive=True)})
    if not files:
        raise FileNotFoundError(f"no data files match {list(patterns)} under {root}")
    records: list[Record] = []
    for file in files:
        text = file.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            records.extend(json.loads(text))
        else:
            records.extend(json.loads(line) for line in text.splitlines() if line.strip())
    for i, rec in enumerate(records):
        if "conversations" not in rec:
            raise ValueError(f"record {i} ({rec.get('id', '?')}) has no 'conversations'")
        if "image" in rec:
            raise NotImplementedError(f"record {i} ({rec.get('id', '?')}): image records are not supported yet")
    return records


def record_videos(record: Record) -> list[str]:
    video = record.get("video")
    return [] if video is None else [video] if isinstance(video, str) else list(video)


class SFTEncoder:
    """Turns a record into model inputs: the Qwen3-VL chat with the video tokens expanded, and labels that keep
    the assistant turns only (their text, <|im_end|> and the newline after it; -100 elsewhere).

    Messages are built as the reference's training data code builds them: no system turn (unless the config's
    ``system_prompt`` or the record gives one; Qwen3-VL's chat template adds none of its own, unlike Qwen2-VL's),
    user text split at the ``<video>`` placeholders with each piece stripped, assistant text verbatim."""

    def __init__(self, processor: SpatialTTTProcessor, config: TrainConfig) -> None:
        self.processor = processor
        self.config = config
        self.system_prompt = config.system_prompt
        hf = processor.processor
        self.block = hf.vision_start_token + hf.video_token + hf.vision_end_token
        tok = processor.tokenizer
        self.header = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self.im_end = tok.convert_tokens_to_ids("<|im_end|>")
        self.newline = tok.encode("\n", add_special_tokens=False)

    # -- text -------------------------------------------------------------------------------------------------
    def messages(self, record: Record) -> list[dict]:
        """Chat messages; ``<video>`` marks where each video goes (a record without one gets its videos first)."""
        n_videos = len(record_videos(record))
        turns = record["conversations"]
        placed = sum(t["value"].count("<video>") for t in turns)
        if placed not in (0, n_videos):
            raise ValueError(f"record {record.get('id', '?')}: {placed} <video> placeholders for {n_videos} videos")
        msgs = []
        if self.system_prompt and not (turns and _ROLES.get(turns[0]["from"]) == "system"):
            msgs.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
        for i, turn in enumerate(turns):
            role = _ROLES.get(turn["from"])
            if role is None:
                raise ValueError(f"record {record.get('id', '?')}: unknown speaker {turn['from']!r}")
            value = turn["value"]
            if role == "assistant":
                msgs.append({"role": role, "content": [{"type": "text", "text": value}]})
                continue
            if placed == 0 and n_videos and role == "user" and not any(m["role"] == "user" for m in msgs):
                value = "<video>" * n_videos + value
            content = []
            for part in _PLACEHOLDER.split(value):
                if part == "<video>":
                    content.append({"type": "video"})
                elif part == "<image>":
                    raise NotImplementedError("<image> placeholders are not supported yet")
                elif part.strip():
                    content.append({"type": "text", "text": part.strip()})
            msgs.append({"role": role, "content": content})
        return msgs

    def text(self, record: Record) -> str:
        """The rendered chat, with a bare <|video_pad|> per video (expanded by the processor, as at inference)."""
        chat = self.processor.processor.apply_chat_template(self.messages(record), tokenize=False)
        return chat.replace(self.block, self.processor.processor.video_token)

    def labels(self, input_ids: torch.Tensor) -> torch.Tensor:
        ids = input_ids.tolist()
        labels = [IGNORE_INDEX] * len(ids)
        h = len(self.header)
        i = 0
        while i <= len(ids) - h:
            if ids[i : i + h] != self.header:
                i += 1
                continue
            j = i + h
            while j < len(ids) and ids[j] != self.im_end:
                j += 1
            end = min(j + 1, len(ids))
            if end < len(ids) and ids[end : end + len(self.newline)] == self.newline:
                end += len(self.newline)
            labels[i + h : end] = ids[i + h : end]
            i = end
        return torch.tensor(labels, dtype=torch.long)

    # -- videos -----------------------------------------------------------------------------------------------
    def _read_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(num_frames=c.num_frames, fps=c.fps, max_frames=c.max_frames, min_frames=c.min_frames)

    def timestamps(self, path: Path) -> list[float]:
        """Timestamps of the frames read_video will sample, without decoding (for length estimates)."""
        if path.is_dir():
            total, rate = len(list_images(path)), 1.0
        else:
            total, rate = probe(path)
        n = num_sampled_frames(total, rate, **self._read_kwargs())
        return [i / rate for i in sample_indices(total, n)]

    def encode(self, record: Record) -> Example:
        root = Path(self.config.data_path)
        clips = [read_video(root / v, size=tuple(self.config.frame_size), **self._read_kwargs()) for v in record_videos(record)]
        kwargs: dict[str, Any] = {}
        if clips:
            kwargs["videos"] = [c.frames for c in clips]
            kwargs["video_metadata"] = [
                VideoMetadata(total_num_frames=c.num_frames, fps=1.0, frames_indices=[float(t) for t in c.timestamps])
                for c in clips
            ]
        out = self.processor.processor(text=[self.text(record)], return_tensors="pt", **kwargs)
        input_ids = out["input_ids"][0]
        example = {"input_ids": input_ids, "mm_token_type_ids": out["mm_token_type_ids"][0], "labels": self.labels(input_ids)}
        if clips:
            example["pixel_values_videos"] = out["pixel_values_videos"]
            example["video_grid_thw"] = out["video_grid_thw"]
        return example

    def estimate_length(self, record: Record) -> int:
        """Token count of the encoded record, from the video headers alone (exact for the Qwen3-VL layout:
        per temporal group ``<t seconds>`` + vision_start + video tokens + vision_end)."""
        tok = self.processor.tokenizer
        n = len(tok.encode(self.text(record), add_special_tokens=False))
        per_group = self.processor.tokens_per_group(*self.config.frame_size) + 2
        for video in record_videos(record):
            ts = self.timestamps(Path(self.config.data_path) / video)
            n -= 1  # the bare <|video_pad|>
            for k in range(0, len(ts) - 1, 2):
                stamp = f"<{(ts[k] + ts[k + 1]) / 2:.1f} seconds>"
                n += per_group + len(tok.encode(stamp, add_special_tokens=False))
        return n


def estimate_lengths(encoder: SFTEncoder, records: Sequence[Record]) -> list[int]:
    """Length estimates; each video is probed once however many records use it."""
    cache: dict[str, list[float]] = {}
    original = encoder.timestamps

    def cached(path: Path) -> list[float]:
        key = str(path)
        if key not in cache:
            cache[key] = original(path)
        return cache[key]

    encoder.timestamps = cached  # type: ignore[method-assign]
    try:
        return [encoder.estimate_length(r) for r in records]
    finally:
        del encoder.timestamps


def make_packs(lengths: Sequence[int], max_length: int, seed: int, packing: bool = True) -> tuple[list[list[int]], list[int]]:
    """Groups record indices into packs of at most ``max_length`` tokens, in a seeded random order (greedy, in
    order: a pack is closed when the next record does not fit). Returns packs and the dropped (too long) indices."""
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    packs: list[list[int]] = []
    dropped: list[int] = []
    current: list[int] = []
    used = 0
    for i in order:
        n = lengths[i]
        if n > max_length:
            dropped.append(i)
            continue
        if current and (not packing or used + n > max_length):
            packs.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        packs.append(current)
    return packs, dropped


class PackDataset(Dataset):
    """Item i: the encoded sequences of pack i (a list of examples). Decoding runs where this is called: in
    DataLoader workers when num_workers > 0."""

    def __init__(self, records: Sequence[Record], packs: Sequence[Sequence[int]], encoder: SFTEncoder) -> None:
        self.records, self.packs, self.encoder = records, packs, encoder

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, index: int) -> list[Example]:
        return [self.encoder.encode(self.records[i]) for i in self.packs[index]]


def collate_pack(batch: list[list[Example]]) -> list[Example]:
    """Batch size is one pack: the DataLoader hands the pack's list of sequences through unchanged."""
    if len(batch) != 1:
        raise ValueError("the training DataLoader takes one pack per batch")
    return batch[0]


@dataclass
class PackSampler(Sampler[int]):
    """Epoch-seeded shuffle of pack indices, split across ranks (padded by wrapping so every rank gets the
    same count), starting ``skip`` items into this rank's share (for exact resume)."""

    num_packs: int
    seed: int
    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    skip: int = 0

    def per_rank(self) -> int:
        return math.ceil(self.num_packs / self.world_size)

    def __iter__(self) -> Iterator[int]:
        order = torch.randperm(self.num_packs, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        total = self.per_rank() * self.world_size
        order = (order * math.ceil(total / max(len(order), 1)))[:total]
        return iter(order[self.rank :: self.world_size][self.skip :])

    def __len__(self) -> int:
        return max(self.per_rank() - self.skip, 0)
