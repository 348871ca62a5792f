"""A tiny SFT dataset (two short PyAV videos, short QA records), built in seconds; the processor comes from tests/conftest.py."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from spatial_ttt.train import load_config

QA = [
    ("How many chairs are in the room?", "2"),
    ("How many tables are in the room?", "1"),
    ("What is the size of this room (in square meters)?", "15.5"),
    ("Which object appears first in the video?", "A"),
    ("How many beds are in the room?", "3"),
    ("Is the sofa to my left or right?", "left"),
]


def write_video(path: Path, n: int, seed: int, size: int = 64) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("mpeg4", rate=4)
        stream.height = stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            img = np.roll(base, 4 * i, axis=1)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sft")
    (root / "videos").mkdir()
    (root / "sft").mkdir()
    for v in range(2):
        write_video(root / "videos" / f"v{v}.mp4", 8, seed=v)
    records = []
    for i, (q, a) in enumerate(QA):
        records.append({"id": f"r{i}", "video": f"videos/v{i % 2}.mp4",
                        "conversations": [{"from": "human", "value": f"<video>\n{q}"}, {"from": "gpt", "value": a}]})
    records.append({"id": "multi", "video": "videos/v0.mp4", "conversations": [
        {"from": "human", "value": "<video>\nHow many chairs are in the room?"}, {"from": "gpt", "value": "2"},
        {"from": "human", "value": "How many tables are in the room?"}, {"from": "gpt", "value": "1"}]})
    (root / "sft" / "sft-00000.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


TINY_MODEL = {"use_muon": False, "text_config": {"num_hidden_layers": 4}, "ttt_layers": [0, 1, 2], "lact_chunk_size": 16}


@pytest.fixture
def make_config(dataset, processor_dir, tmp_path):
    """Settings for a fast CPU run on the tiny dataset; keyword overrides win."""

    def make(**overrides):
        values = dict(model="tiny", model_settings=TINY_MODEL, processor=str(processor_dir), data_path=str(dataset),
                      frame_size=[64, 64], num_frames=4, max_length=120, bf16=False, num_workers=0,
                      gradient_checkpointing=False, lr=2e-3, lact_lr=2e-3, warmup_ratio=0.0, weight_decay=0.01,
                      save_steps=1000, output_dir=str(tmp_path / "run"), seed=0)
        values.update(overrides)
        return load_config(None, values)

    return make
