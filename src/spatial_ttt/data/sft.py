"""SFT records in the training pipeline's conversation format, written as atomic JSONL shards.

A record is {"id", "video", "conversations": [{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", ...}],
"question_type"}; the trainer reads "video" and "conversations" (see the shared spec), the other two keys are
for filtering and debugging.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from .describe import DESCRIPTION_PROMPTS, describe_scene
from .qa import QUESTION_TYPES, generate_qa
from ..files import atomic_write_text
from .scene import Scene

Record = dict[str, Any]


def _record(rec_id: str, video: str, question: str, answer: str, qtype: str) -> Record:
    return {"id": rec_id, "video": video,
            "conversations": [{"from": "human", "value": f"<video>\n{question}"}, {"from": "gpt", "value": answer}],
            "question_type": qtype}


def build_sft_records(scene: Scene, video_path: str, seed: int, qa_per_type: int = 3,
                      types: tuple[str, ...] = QUESTION_TYPES, descriptions: int = 1) -> list[Record]:
    """Dense-description records plus spatial QA records for one scene and its video.

    video_path is stored as given (make it relative to the dataset's data_path). Objects never visible in the
    video are left out of both, when the scene has visibility.
    """
    scene = scene.seen_only()
    records = []
    rng = np.random.default_rng([seed, 99])
    for k in range(descriptions):
        prompt = DESCRIPTION_PROMPTS[int(rng.integers(len(DESCRIPTION_PROMPTS)))]
        records.append(_record(f"{scene.scene_id}-description-{k}", video_path, prompt,
                               describe_scene(scene, seed + k), "scene_description"))
    counters: dict[str, int] = {}
    for qa in generate_qa(scene, seed, qa_per_type, types):
        n = counters.get(qa.question_type, 0)
        counters[qa.question_type] = n + 1
        records.append(_record(f"{scene.scene_id}-{qa.question_type}-{n}", video_path, qa.prompt(), qa.answer,
                               qa.question_type))
    return records


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    lines = [json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def read_jsonl(path: str | Path) -> list[Record]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_sft_shards(records: Iterable[Record], out_dir: str | Path, shard_size: int = 1000,
                     prefix: str = "sft") -> list[Path]:
    """Write records as <prefix>-00000.jsonl, ... with shard_size records each, every shard atomically; shards of
    an earlier, longer run with the same prefix are removed so the folder holds exactly this set."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    paths, batch = [], []

    def flush() -> None:
        path = out_dir / f"{prefix}-{len(paths):05d}.jsonl"
        write_jsonl(batch, path)
        paths.append(path)
        batch.clear()

    for r in records:
        batch.append(r)
        if len(batch) == shard_size:
            flush()
    if batch or not paths:
        flush()
    for stale in set(out_dir.glob(f"{prefix}-[0-9][0-9][0-9][0-9][0-9].jsonl")) - set(paths):
        stale.unlink()
    return paths


def read_sft_shards(out_dir: str | Path, prefix: str = "sft") -> Iterator[Record]:
    for path in sorted(Path(out_dir).glob(f"{prefix}-*.jsonl")):
        yield from read_jsonl(path)
