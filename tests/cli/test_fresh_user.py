"""Issue 11: what a new user meets. Every bad input gets one `error:` line and exit code 2 (fresh processes, as a
user runs the command), nothing is accepted silently, and the command answers --help without loading torch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import av
import pytest

from spatial_ttt.demo import synthetic_frames

from .conftest import SMALL, run_cli


def _without_settings(stderr: str) -> str:
    """stderr less the one informational line a loaded model prints (the TTT settings in effect)."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not line.startswith("TTT settings: "))


def _one_error_line(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = _without_settings(result.stderr).splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("error: "), result.stderr  # no blank or traceback lines
    assert expected in lines[-1], lines[-1]


# ---------------------------------------------------------------------------------------------------- start-up


def test_the_command_line_module_does_not_import_torch():
    code = "import sys, spatial_ttt.cli; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_package_names_load_on_first_use():
    code = ("import sys, spatial_ttt; assert 'torch' not in sys.modules; "
            "from spatial_ttt import StreamSession, load_model; print(StreamSession.__module__, load_model.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["spatial_ttt.streaming", "spatial_ttt.checkpoint"], result.stderr


def test_stream_help_shows_the_time_format():
    result = run_cli("stream", "--help")
    assert result.returncode == 0
    assert "[h:]mm:ss" in result.stdout


# ---------------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize("time", ["1:99:99", "nan", "inf", "-3", "1:2:3:4"])
def test_bad_times_are_refused(tiny_folder, video, time):
    _one_error_line(run_cli("stream", tiny_folder, video, "--at", time, "How many?"), f"--at '{time}'")


def test_save_path_is_checked_before_streaming(tiny_folder, video, tmp_path):
    target = tmp_path / "nodir" / "x.st"
    _one_error_line(run_cli("stream", tiny_folder, video, "--at", "1", "How many?", "--save", target),
                    f"--save {target}: folder {target.parent} does not exist")


def _bad_config(tiny_folder, tmp_path, name, edit):
    folder = tmp_path / name
    shutil.copytree(tiny_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(edit(config)))
    return folder


def _hidden_70(config):
    config["text_config"]["hidden_size"] = 70
    return config


def _eight_layers(config):
    config["text_config"]["num_hidden_layers"] = "eight"
    return config


@pytest.mark.parametrize("name, edit, expected", [
    ("hidden", _hidden_70, "config.json: bad settings (invalid SpatialTTTConfig: hidden_size 70"),
    ("list", lambda c: [], "config.json: expected a JSON object of settings, got list"),
    ("eight", _eight_layers, "config.json: bad settings (Validation error for field 'num_hidden_layers'"),
])
def test_bad_config_values_in_ask(tiny_folder, video, tmp_path, name, edit, expected):
    folder = _bad_config(tiny_folder, tmp_path, name, edit)
    _one_error_line(run_cli("ask", folder, video, "How many?", "--size", SMALL), f"{folder}/{expected}")


def test_bad_config_values_in_stream_info_and_eval(cli, tiny_folder, video, tmp_path):
    folder = _bad_config(tiny_folder, tmp_path, "list", lambda c: [])
    message = f"error: {folder}/config.json: expected a JSON object of settings, got list"
    for args in (["stream", folder, video, "--at", "1", "q"], ["info", folder]):
        result = cli(*args)
        assert result.exit_code == 2 and result.stderr.strip() == message, result.output
    data = tmp_path / "VSI-Bench"
    data.mkdir()
    (data / "test.jsonl").write_text(json.dumps({
        "id": 1, "dataset": "scannet", "scene_name": "s", "question_type": "object_counting",
        "question": "How many chairs?", "options": None, "ground_truth": "2"}) + "\n")
    (data / "scannet").mkdir()
    shutil.copy(video, data / "scannet" / "s.mp4")
    result = cli("eval", "vsibench", "--data", data, "--model", folder, "--out", tmp_path / "run")
    assert result.exit_code == 2 and result.stderr.strip() == message, result.output


# ---------------------------------------------------------------------------------------------------- videos


def _front_index_mp4(path, seconds=10, fps=8):
    """An mp4 with its index (moov) before the media data, as `-movflags faststart` writes it."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = 64, 96
        stream.pix_fmt = "yuv420p"
        for frame in synthetic_frames(seconds * fps, (64, 96)):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return path


def test_a_truncated_mp4_is_refused(cli, tiny_folder, tmp_path):
    from spatial_ttt.video import VideoError, read_video

    whole = _front_index_mp4(tmp_path / "whole.mp4")
    assert read_video(whole, fps=1).num_frames == 10
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 4 // 10])  # before the fix: read as 4 s of a 10 s video, no word
    with pytest.raises(VideoError, match=f"truncated video {cut}: its 'mdat' box needs"):
        read_video(cut, fps=1)
    result = cli("ask", tiny_folder, cut, "How many?", "--size", SMALL)
    assert result.exit_code == 2 and f"error: truncated video {cut}" in result.stderr


def test_more_frames_than_the_clip_has_is_said(tiny_folder, video):
    result = run_cli("ask", tiny_folder, video, "How many?", "--size", SMALL, "--num-frames", "100",
                     "--max-new-tokens", "1")
    assert result.returncode == 0, result.stderr
    assert f"note: --num-frames 100: {video} has only 24 frames; sampled 24" in result.stderr
    assert "" not in result.stderr.splitlines()  # no blank lines where spinners stood (stderr is not a terminal)


def test_num_frames_above_max_frames_is_an_error(tiny_folder, video):
    _one_error_line(run_cli("ask", tiny_folder, video, "q", "--num-frames", "300"),
                    "--num-frames 300 is more than --max-frames 128")


def test_stream_reads_an_image_folder(cli, tiny_folder, tmp_path):
    from PIL import Image

    folder = tmp_path / "views"
    folder.mkdir()
    for i, frame in enumerate(synthetic_frames(4, (64, 96))):
        Image.fromarray(frame).save(folder / f"view{i}.png")
    result = cli("stream", tiny_folder, folder, "--at", "2", "How many?", "--at", "4", "Now?", "--size", SMALL,
                 "--chunk-frames", "2", "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["2", "4"]
    assert "[2.0 s] 2 frames in memory" in result.stderr and "[4.0 s] 4 frames in memory" in result.stderr


# ---------------------------------------------------------------------------------------------------- questions


def test_question_from_a_file_and_from_stdin(tiny_folder, video, tmp_path):
    question = tmp_path / "question.txt"
    question.write_text("How many chairs are in the room?\n")
    args = ["--size", SMALL, "--max-new-tokens", "1", "--json"]
    from_file = run_cli("ask", tiny_folder, video, f"@{question}", *args)
    assert json.loads(from_file.stdout)["prompt"].split("\n")[1] == "How many chairs are in the room?"
    env_cmd = [sys.executable, "-m", "spatial_ttt", "ask", str(tiny_folder), str(video), "-", *args]
    from_stdin = subprocess.run(env_cmd, input="How many tables?", capture_output=True, text=True, timeout=120,
                                env=_env())
    assert json.loads(from_stdin.stdout)["prompt"].split("\n")[1] == "How many tables?", from_stdin.stderr
    _one_error_line(run_cli("ask", tiny_folder, video, f"@{tmp_path / 'none.txt'}"),
                    f"question file not found: {tmp_path / 'none.txt'}")


def _env():
    import os

    from .conftest import SRC

    return dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", COLUMNS="200")


def test_a_question_longer_than_the_model_is_flagged(tiny_folder, video, tmp_path):
    question = tmp_path / "long.txt"
    question.write_text("How many chairs are there " * 1200)  # > 4096 positions of the tiny model
    result = run_cli("ask", tiny_folder, video, f"@{question}", "--size", SMALL)
    _one_error_line(result, "more than the model's max_position_embeddings 4096")


def test_answers_are_escaped_onto_one_line():
    from spatial_ttt.cli import _one_line

    assert _one_line("two\nlines\tand a \\ backslash\r") == "two\\nlines\\tand a \\\\ backslash\\r"


# ---------------------------------------------------------------------------------------------------- outputs


def test_outputs_are_0644(cli, tiny_folder, video, tmp_path):
    from spatial_ttt.pipeline import make_tiny_model_folder

    folder = make_tiny_model_folder(tmp_path / "model")
    assert {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}["model.safetensors"] == 0o644
    saved = tmp_path / "memory.st"
    result = cli("stream", tiny_folder, video, "--at", "1", "q", "--size", SMALL, "--max-new-tokens", "1",
                 "--save", saved)
    assert result.exit_code == 0, result.output
    assert saved.stat().st_mode & 0o777 == 0o644


def test_loading_a_processor_from_a_model_folder_prints_nothing(tiny_folder):
    code = f"from spatial_ttt.video import SpatialTTTProcessor; SpatialTTTProcessor.from_pretrained({str(tiny_folder)!r})"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=_env())
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_corrupt_video_in_an_eval_dataset_stops_with_one_line_and_keeps_the_answers(cli, tiny_folder, video,
                                                                                         corrupt_video, tmp_path):
    data = tmp_path / "VSI-Bench"
    (data / "scannet").mkdir(parents=True)
    shutil.copy(video, data / "scannet" / "good.mp4")
    shutil.copy(corrupt_video, data / "scannet" / "bad.mp4")
    records = [{"id": i, "dataset": "scannet", "scene_name": scene, "question_type": "object_counting",
                "question": "How many chairs?", "options": None, "ground_truth": "2"}
               for i, scene in enumerate(["good", "bad"])]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "run"
    result = cli("eval", "vsibench", "--data", data, "--model", tiny_folder, "--out", out, "--max-new-tokens", "1")
    assert result.exit_code == 2, result.output
    stderr = _without_settings(result.stderr)
    assert stderr.startswith("error: ") and f"video {data / 'scannet' / 'bad.mp4'}" in stderr
    assert f"answers so far are saved in {out}; fix the video and rerun to resume" in stderr
    assert len(stderr.splitlines()) == 1
    assert len((out / "results.jsonl").read_text().splitlines()) == 1  # the good video's answer is kept


def test_ctrl_c_in_eval_says_how_to_resume(video, tmp_path):
    import typer
    from typer.testing import CliRunner

    from spatial_ttt.eval.cli import register

    class Interrupted:
        def answer(self, video, prompt, *, max_new_tokens):
            raise KeyboardInterrupt

    app = typer.Typer()
    register(app, lambda path, device=None: Interrupted())

    @app.callback()
    def root() -> None:
        pass

    data = tmp_path / "VSI-Bench"
    (data / "scannet").mkdir(parents=True)
    shutil.copy(video, data / "scannet" / "s.mp4")
    (data / "test.jsonl").write_text(json.dumps({
        "id": 1, "dataset": "scannet", "scene_name": "s", "question_type": "object_counting",
        "question": "How many chairs?", "options": None, "ground_truth": "2"}) + "\n")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["eval", "vsibench", "--data", str(data), "--model", "m", "--out", str(out)],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 130, result.output
    assert (f"interrupted: the answers so far are saved in {out}; run the same command again to resume"
            in " ".join(result.stderr.split()))


def test_a_stream_question_longer_than_the_model_is_flagged(cli, tiny_folder, video, tmp_path):
    question = tmp_path / "long.txt"
    question.write_text("How many chairs are there " * 1200)
    result = cli("stream", tiny_folder, video, "--at", "1", f"@{question}", "--size", SMALL)
    assert result.exit_code == 2, result.output
    assert "more than the model's max_position_embeddings 4096" in result.stderr
    assert _without_settings(result.stderr).startswith("error: the stream so far takes ")
