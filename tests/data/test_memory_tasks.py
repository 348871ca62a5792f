"""The memory task suite: deterministic rendered streams with questions computed from the pixels shown."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spatial_ttt.data.memory_tasks import (
    FULL_FRAMES, HELD_OUT_SEED, MIN_PIXELS, NEAR_FRAMES, STRIDES, TASKS, is_near, main, render_walk, scene_records,
    stream_frames, walk_questions, walk_records)
from spatial_ttt.eval.memory_suite import answer_spans, suite_encoder
from spatial_ttt.train.config import load_config
from spatial_ttt.video import SpatialTTTProcessor, make_tiny_processor, read_video

ROOT = Path(__file__).resolve().parents[2]


def test_first_held_out_scene_has_these_questions_and_answers(tmp_path):
    (rec,) = scene_records(HELD_OUT_SEED, tmp_path, lengths=("4x",))
    turns = rec["conversations"]
    assert rec["id"] == "1000000-4x" and rec["tasks"] == list(TASKS)
    assert [t["value"] for t in turns] == [
        "<video>\nWhich object did you see first?", "bed",
        "Which appeared first, the bookshelf or the lamp?", "lamp",
        "How many plants did you see?", "4",
        "Is the first room small, medium or large?", "small",
    ]
    clip = read_video(tmp_path / rec["video"], fps=1.0, max_frames=256, size=(64, 96))
    assert clip.num_frames == 64 and tuple(clip.timestamps[:3]) == (0.0, 1.0, 2.0)  # every 4th frame of 256, at 1 fps


def test_lengths_share_the_walk_and_each_object_is_in_view_only_for_a_while():
    walk = render_walk(HELD_OUT_SEED)
    assert walk.rgb.shape == (256, 64, 96, 3)
    frames_in_view = (walk.pixels >= 20).sum(axis=0)
    assert frames_in_view.tolist() == [77, 51, 19, 43, 34, 19, 23, 66, 29, 50, 106, 50, 26]  # of 256
    assert ((walk.pixels[::16] >= 20).sum(axis=0)).tolist() == [6, 4, 1, 3, 3, 2, 3, 4, 1, 4, 6, 3, 2]  # the 1x stream
    per_length = walk_questions(walk, HELD_OUT_SEED)
    assert [(q.question, q.answer) for q in per_length["16x"]] == [
        ("Which object did you see first?", "bed"), ("Which appeared first, the chair or the lamp?", "lamp"),
        ("How many beds did you see?", "2"), ("Is the first room small, medium or large?", "small")]
    assert [q.answer for q in per_length["1x"]] == ["bed", "lamp", "1", "small"]


def test_build_writes_jsonl_records_the_trainer_reads(tmp_path):
    main([str(tmp_path), "--train", "1", "--eval", "0"])
    rows = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert [r["length"] for r in rows] == ["16x", "4x", "1x"]
    assert all((tmp_path / r["video"]).is_file() for r in rows)


def test_answer_spans_are_the_labelled_runs():
    labels = torch.tensor([-100, -100, 7, 8, -100, 9, -100, -100, 4])
    assert answer_spans(labels) == [(2, 4), (5, 6), (8, 9)]


# -- the near curriculum -------------------------------------------------------------------------------------------

def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def test_near_zero_gives_the_records_of_before_byte_for_byte():
    # sha256 of build_split's JSONL (3 scenes) before the curriculum existed (commit aca2419)
    before = {0: "fe9deafdc156d3c0b367ef136c6a5e0e18b92b73a312e4bb3787ba6ee2f47b6c",
              HELD_OUT_SEED: "eead18c8ac95f071cd9db8170c8bd907ace12c5dbeeebb907eac7aae033b1d34"}
    for first, digest in before.items():
        for near in (0.0, 1.0):
            records = [r for s in range(first, first + 3) for r in walk_records(render_walk(s), s, near=near)]
            same = hashlib.sha256(_jsonl(records).encode()).hexdigest() == digest
            assert same == (near == 0.0 or first == HELD_OUT_SEED)  # held-out records ignore the setting


def _clip_spans(ids: torch.Tensor, labels: torch.Tensor, video_token: int) -> list[tuple[int, int]]:
    """Per answer: (first video token of the latest video before it, the position that predicts the answer)."""
    spans, previous_end = [], 0
    video_at = (ids == video_token).nonzero().flatten()
    for start, end in answer_spans(labels):
        shown = video_at[(video_at >= previous_end) & (video_at < start)]
        spans.append((int(shown[0]) if len(shown) else -1, start - 1))
        previous_end = end
    return spans


def test_near_records_put_every_question_within_one_window_of_its_evidence(tmp_path):
    """A near record shows the stream's first NEAR_FRAMES frames (in room 1: where `first` and `room_size` are
    decided, and the objects `order` and `count` ask about are those of the clip) before each question; the clip's
    first video token is within the evidence models' window of the answer. A plain 16x record's is not."""
    window = load_config(ROOT / "configs/evidence_ttt_all.yaml").model_settings["window_size"]
    make_tiny_processor(tmp_path / "processor")
    encoder = suite_encoder(SpatialTTTProcessor.from_pretrained(tmp_path / "processor"), tmp_path)
    video_token = encoder.processor.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    seed = 0
    walk = render_walk(seed)
    records = scene_records(seed, tmp_path, near=1.0)
    assert [r.get("near", False) for r in records] == [True, True, True]  # every clip of scene 0 can pose them all
    room1_lo, room1_hi = walk.synth.scene.rooms[0].bounds()
    for rec in records:
        cut = stream_frames(rec["length"], near=True)
        frames = range(FULL_FRAMES)[cut]
        assert len(frames) == NEAR_FRAMES and rec["tasks"] == list(TASKS) and len(rec["video"]) == len(TASKS)
        cameras = np.stack([walk.synth.scene.frames[i].pose[:3, 3] for i in frames])
        in_room1 = np.all((cameras[:, :2] >= room1_lo[:2]) & (cameras[:, :2] <= room1_hi[:2]), axis=1)
        # room_size's evidence: the clip starts in room 1 (at 1x its 12 of 16 frames reach into room 2)
        assert in_room1.tolist() == [True] * (9 if rec["length"] == "1x" else NEAR_FRAMES) + [False] * (
            3 if rec["length"] == "1x" else 0), rec["id"]
        seen = walk.pixels[cut] >= MIN_PIXELS
        first_seen = int(np.flatnonzero(seen.any(axis=1))[0])  # `first`'s evidence frame, inside the clip
        assert first_seen < NEAR_FRAMES
        example = encoder.encode(rec)
        ids, labels = example["input_ids"].flatten(), example["labels"].flatten()
        assert encoder.estimate_length(rec) == len(ids)  # the trainer packs near records by the right length
        spans = _clip_spans(ids, labels, video_token)
        assert len(spans) == len(TASKS)
        for clip_start, predicted_at in spans:
            assert 0 <= clip_start and predicted_at - clip_start < window, (rec["id"], clip_start, predicted_at)
        assert int((ids == video_token).sum()) == len(TASKS) * NEAR_FRAMES // 2 * 6  # 6 tokens per frame pair
    (plain,) = scene_records(seed, tmp_path, lengths=("16x",))
    example = encoder.encode(plain)
    clip_start, predicted_at = _clip_spans(example["input_ids"].flatten(), example["labels"].flatten(), video_token)[0]
    assert predicted_at - clip_start > 10 * window  # the plain stream's start is 16 windows back


def test_near_share_is_honoured_and_drawn_per_record():
    drawn = [is_near(seed, length, 0.3) for seed in range(2000) for length in STRIDES]
    assert abs(sum(drawn) / len(drawn) - 0.3) < 0.02  # 6000 draws: 3 standard errors ~ 0.018
    assert drawn == [is_near(seed, length, 0.3) for seed in range(2000) for length in STRIDES]  # seeded
    # nested: a record near at 0.3 stays near at 0.5, so raising the share only adds near records
    assert all(is_near(s, length, 0.5) for s in range(2000) for length in STRIDES if is_near(s, length, 0.3))
    assert not any(is_near(seed, length, 1.0) for seed in range(HELD_OUT_SEED, HELD_OUT_SEED + 50) for length in STRIDES)
    assert not any(is_near(seed, length, 0.0) for seed in range(500) for length in STRIDES)


def test_a_seeded_batch_of_scenes_has_the_near_share_and_the_same_records_twice():
    seeds = range(40)
    walks = {s: render_walk(s) for s in seeds}
    batch = [r for s in seeds for r in walk_records(walks[s], s, near=0.5) or []]
    assert batch == [r for s in seeds for r in walk_records(walks[s], s, near=0.5) or []]
    near = [r for r in batch if r.get("near")]
    drawn = [r for r in batch if is_near(int(r["id"][:7]), r["length"], 0.5)]
    # a drawn record whose clip cannot pose every question stays plain (16x clips show ~3 objects)
    assert {r["id"].removesuffix("-near") for r in near} <= {r["id"].removesuffix("-near") for r in drawn}
    # measured: 39 usable scenes; 56 of 117 records drawn (0.48), 49 near (0.42: 6 of 18 drawn 16x clips stay plain)
    assert len(batch) == 117 and len(drawn) == 56 and len(near) == 49
    assert all(r["id"].endswith("-near") and len(r["video"]) == 4 for r in near)


def test_a_near_share_outside_0_to_1_is_refused():
    walk = render_walk(0)
    for near in (-0.1, 1.5):
        with pytest.raises(ValueError, match=f"between 0 and 1; got {near}"):
            walk_records(walk, 0, near=near)
