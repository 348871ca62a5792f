"""Fixture datasets written by the tests, and small deterministic fake models (imported by the tests)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


class FakeVideoModel:
    """Answers by looking up which known question text occurs in the prompt."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[tuple[Any, str, int]] = []

    def answer(self, video, prompt: str, *, max_new_tokens: int) -> str:
        self.calls.append((video, prompt, max_new_tokens))
        matches = [q for q in self.answers if q in prompt]
        assert len(matches) == 1, f"prompt matches {len(matches)} known questions: {prompt!r}"
        return self.answers[matches[0]]


class FakeSession:
    def __init__(self, model: FakeStreamingModel) -> None:
        self.model = model
        self.log: list[tuple] = []
        self.closed = False

    def observe_video(self, path, start_s=None, end_s=None) -> None:
        self.log.append(("observe", Path(path).name, start_s, end_s))

    def ask(self, prompt: str, *, max_new_tokens: int) -> str:
        self.log.append(("ask", max_new_tokens))
        return self.model.reply(prompt, len([e for e in self.log if e[0] == "ask"]) - 1)

    def close(self) -> None:
        self.closed = True


class FakeStreamingModel:
    """reply(prompt, k) gives the answer to the k-th question of a stream."""

    def __init__(self, reply: Callable[[str, int], str]) -> None:
        self.reply = reply
        self.sessions: list[FakeSession] = []

    def open_stream(self) -> FakeSession:
        self.sessions.append(FakeSession(self))
        return self.sessions[-1]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really a video")
    return path


def _mc(i, qtype, gt, scene="scene0"):
    return {
        "id": i,
        "dataset": "scannet",
        "scene_name": scene,
        "question_type": qtype,
        "question": f"Q{i}: multiple choice {qtype}?",
        "options": ["A. chair", "B. table", "C. sofa", "D. bed"],
        "ground_truth": gt,
    }


def _num(i, qtype, gt, scene="scene1"):
    return {
        "id": i,
        "dataset": "arkitscenes",
        "scene_name": scene,
        "question_type": qtype,
        "question": f"Q{i}: how much {qtype}?",
        "options": None,
        "ground_truth": gt,
    }


# One record per line: (record, model prediction). Scores by hand in test_vsibench.py.
VSIBENCH_CASES = [
    (_mc(1, "object_rel_direction_easy", "A"), "A"),
    (_mc(2, "object_rel_direction_easy", "B"), "B."),
    (_mc(3, "object_rel_direction_medium", "C"), "c"),
    (_mc(4, "object_rel_direction_hard", "D"), "A"),
    (_mc(5, "object_rel_distance", "B"), "B. table"),
    (_mc(6, "route_planning", "B"), "The answer is B"),
    (_mc(7, "obj_appearance_order", "C"), "C."),
    (_num(8, "object_counting", "4"), "3"),
    (_num(9, "object_abs_distance", "10"), "9"),
    (_num(10, "object_size_estimation", "50"), "about 50"),
    (_num(11, "room_size_estimation", "20"), "20."),
]


@pytest.fixture
def vsibench_dir(tmp_path: Path) -> Path:
    root = tmp_path / "VSI-Bench"
    write_jsonl(root / "test.jsonl", [r for r, _ in VSIBENCH_CASES])
    touch(root / "scannet" / "scene0.mp4")
    touch(root / "arkitscenes" / "scene1.mp4")
    return root


@pytest.fixture
def vsibench_model() -> FakeVideoModel:
    return FakeVideoModel({r["question"]: pred for r, pred in VSIBENCH_CASES})


def load_small_pipeline(path: str, *, device: str):
    """An lmms-eval plug-in loader (`loader=eval_fixtures:load_small_pipeline`): the tiny model on 2 small frames."""
    from spatial_ttt.pipeline import SpatialTTTPipeline

    return SpatialTTTPipeline.from_pretrained(path, device=device, num_frames=2, size=(32, 32))


def record_device(path: str, *, device: str) -> FakeVideoModel:
    """A plug-in loader that remembers what it was given."""
    model = FakeVideoModel({})
    model.loaded = (path, device)
    return model


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A complete tiny model folder (untrained checkpoint + processor)."""
    from spatial_ttt.pipeline import make_tiny_model_folder

    return make_tiny_model_folder(tmp_path_factory.mktemp("models") / "tiny")
