"""The command as a user runs it: fresh processes, exit codes, stdout/stderr. Kept to a few runs (torch import
costs seconds each); everything else goes through the in-process runner in test_cli_commands.py."""

from __future__ import annotations

import json

from .conftest import SMALL, run_cli


def test_no_arguments_runs_the_embedded_trained_model_on_a_held_out_walk():
    result = run_cli()
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for step in ("load embedded model", "render held-out walk", "stream + answer"):
        assert step in text
    assert "TTT layers [0, 1, 2] (fast-weight branch on)" in text and "full-attention anchor layers [3]" in text
    # the first held-out walk's four questions, each with the model's answer beside the truth
    assert "Which object did you see first?" in text and "truth: 'bed'" in text
    assert "Which appeared first, the bookshelf or the lamp?" in text and "truth: 'lamp'" in text
    assert text.count("model: '") == 4
    assert "right on this walk" in text and "done in" in text
    assert "Traceback" not in result.stderr


def test_ask_prints_an_answer_as_json(tiny_folder, video):
    result = run_cli("ask", tiny_folder, video, "How many chairs are in the room?", "--size", SMALL,
                     "--max-new-tokens", "4", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert isinstance(report["answer"], str)
    assert report["frames"] == 24  # 3 s at 8 fps, all frames (16 fps asked, capped by the frame count)
    assert report["prompt"] == ("These are frames of a video.\nHow many chairs are in the room?\n"
                                "Please answer the question using a single word or phrase.")
    assert 0 < report["new_tokens"] <= 4
    assert set(report["timings_s"]) == {"read video", "preprocess", "generate"}


def test_missing_video_exits_2_naming_the_file(tiny_folder, tmp_path):
    missing = tmp_path / "no_such_video.mp4"
    result = run_cli("ask", tiny_folder, missing, "How many chairs?")
    assert result.returncode == 2
    assert f"video not found: {missing}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_stream_answers_each_question_at_its_time(tiny_folder, video):
    result = run_cli("stream", tiny_folder, video, "--at", "1", "How many chairs are in the room?",
                     "--at", "0:02.5", "Which object is closest to the door?", "-o", "A. chair", "-o", "B. table",
                     "--fps", "2", "--chunk-frames", "2", "--size", SMALL, "--max-new-tokens", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["1", "2.5"]
    # 2 fps: frames at 0, 0.5 by 1 s; then 1, 1.5, 2 by 2.5 s (odd: the question sees frame 2 padded, the
    # memory keeps it for its pair; it used to be repeated into the memory, 6 frames)
    assert "[1.0 s] 2 frames in memory" in result.stderr
    assert "[2.5 s] 5 frames in memory" in result.stderr
