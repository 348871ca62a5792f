"""The memory task suite: deterministic rendered streams with questions computed from the pixels shown."""

from __future__ import annotations

import json

import torch

from spatial_ttt.data.memory_tasks import HELD_OUT_SEED, TASKS, main, render_walk, scene_records, walk_questions
from spatial_ttt.eval.memory_suite import answer_spans
from spatial_ttt.video import read_video


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
