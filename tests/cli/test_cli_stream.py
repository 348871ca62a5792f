"""`spatial-ttt stream` in-process: saving the memory, and the error message for each kind of bad input."""

from __future__ import annotations

import json

import pytest

from .conftest import SMALL

FAST = ("--size", SMALL, "--fps", "2", "--chunk-frames", "4", "--max-new-tokens", "2")


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    return result.stderr


def test_stream_saves_its_memory(cli, tiny_folder, video, tmp_path):
    from spatial_ttt.pipeline import SpatialTTTPipeline
    from spatial_ttt.streaming import StreamSession

    result = cli("stream", tiny_folder, video, "--at", "2", "How many chairs?", *FAST, "--save", tmp_path / "s.st")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("2\t")
    pipe = SpatialTTTPipeline.from_pretrained(tiny_folder)
    session = StreamSession.load(tmp_path / "s.st", pipe.model, pipe.processor)
    assert session.num_frames == 4


def test_an_earlier_question_does_not_change_a_later_answer(cli, tiny_folder, video):
    """--at 1.2 X --at 3 Q answers Q exactly like --at 3 Q; the odd frame before 1.2 s is not duplicated."""
    args = ("--size", SMALL, "--fps", "2", "--chunk-frames", "4", "--max-new-tokens", "6")
    both = cli("stream", tiny_folder, video, "--at", "1.2", "Is there a table?", "--at", "3", "How many chairs?", *args)
    one = cli("stream", tiny_folder, video, "--at", "3", "How many chairs?", *args)
    assert both.exit_code == one.exit_code == 0, both.output + one.output
    assert both.stdout.splitlines()[1] == one.stdout.splitlines()[0]
    assert "[3.0 s] 6 frames in memory" in both.stderr and "[3.0 s] 6 frames in memory" in one.stderr


def test_questions_after_the_end_see_the_whole_video(cli, tiny_folder, video):
    result = cli("stream", tiny_folder, video, "--at", "99", "How many chairs?", *FAST)
    assert result.exit_code == 0, result.output
    assert "is 3.0 s long" in result.stderr and "6 frames in memory" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give at least one question: --at TIME"),
        (["--at", "1"], "each --at TIME needs one QUESTION right after it: got 1 times and 0 questions"),
        (["--at", "soon", "How many?"], "--at 'soon': the time must be seconds (12.5) or [h:]mm:ss"),
        (["--at", "-3", "How many?"], "not negative"),
        (["--at", "1", "How many?", "--chunk-frames", "5"], "--chunk-frames must be even"),
        (["--at", "1", "How many?", "--fps", "-1"], "--fps must be positive"),
        (["--at", "1", "How many?", "-o", "chair"], "write each option as a letter"),
    ],
)
def test_bad_stream_options(cli, tiny_folder, video, args, message):
    assert message in _error(cli("stream", tiny_folder, video, *args))


def test_stream_needs_a_readable_video(cli, tiny_folder, corrupt_video, tmp_path):
    assert str(corrupt_video) in _error(cli("stream", tiny_folder, corrupt_video, "--at", "1", "How many?"))
    assert f"no image files (.bmp, .jpeg, .jpg, .png, .tif, .tiff, .webp) in folder: {tmp_path}" in _error(
        cli("stream", tiny_folder, tmp_path, "--at", "1", "How many?"))
    missing = tmp_path / "gone.mp4"
    assert f"video not found: {missing}" in _error(cli("stream", tiny_folder, missing, "--at", "1", "How many?"))


def test_stream_with_a_misshaped_checkpoint(cli, misshaped_folder, video):
    assert "mis-shaped keys" in _error(cli("stream", misshaped_folder, video, "--at", "1", "How many?"))


def test_eval_vsisuper_streams_through_the_pipeline(cli, tiny_folder, tmp_path):
    from spatial_ttt.demo import write_synthetic_video

    root = tmp_path / "VSI-SUPER-Count"
    root.mkdir()
    write_synthetic_video(root / "long.mp4", seconds=3.0, fps=4, size=(64, 96))
    record = {"id": "s1", "video_path": "long.mp4", "question": "How many chairs are there?",
              "split": "10mins_streaming", "query_times": [1, 2], "answers": ["1", "2", "3"]}
    (root / "test.jsonl").write_text(json.dumps(record) + "\n")
    result = cli("eval", "vsisuper_count", "--data", root, "--model", tiny_folder, "--out", tmp_path / "run",
                 "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (tmp_path / "run").rglob("*.jsonl").__next__().read_text().splitlines()]
    assert len(rows[0]["predictions"]) == 3
