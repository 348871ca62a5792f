"""Every command in-process (typer's runner): outputs and the error message for each kind of bad input."""

from __future__ import annotations

import json
import re

import pytest

from spatial_ttt.pipeline import make_tiny_model_folder

from .conftest import SMALL


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("ask", "stream", "info", "convert", "eval", "data"):
        assert command in result.stdout


def test_ask_help_lists_the_video_options(cli):
    result = cli("ask", "--help")
    assert result.exit_code == 0
    for option in ("--fps", "--num-frames", "--max-frames", "--max-new-tokens", "--options", "--processor"):
        assert option in result.stdout


def test_ask_answers_on_stdout_with_timings_on_stderr(cli, tiny_folder, video):
    result = cli("ask", tiny_folder, video, "Which object is closest to the door?", "--size", SMALL,
                 "--num-frames", "8", "--max-new-tokens", "3",
                 "-o", "A. chair", "-o", "B. table", "-o", "C. sofa")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    assert "8 frames" in result.stderr and "generate" in result.stderr


def test_ask_reads_an_image_folder(cli, tiny_folder, tmp_path):
    from PIL import Image

    from spatial_ttt.demo import synthetic_frames

    for i, frame in enumerate(synthetic_frames(4, (64, 96))):
        Image.fromarray(frame).save(tmp_path / f"frame{i}.png")
    result = cli("ask", tiny_folder, tmp_path, "How many objects?", "--size", SMALL, "--max-new-tokens", "2", "--json")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["frames"] == 4
    # a one-off command decodes eagerly and prefills with the reference kernels (no per-process compilation)
    # unless told otherwise
    assert answer["ttt_settings"]["decode_kernel"]["value"] == "eager"
    assert answer["ttt_settings"]["ttt_kernel"]["value"] == "reference"
    graphed = cli("ask", tiny_folder, tmp_path, "How many objects?", "--size", SMALL, "--max-new-tokens", "2", "--json",
                  "--ttt", "decode_kernel=graphed", "--ttt", "ttt_kernel=auto")
    assert graphed.exit_code == 0, graphed.output
    settings = json.loads(graphed.stdout)["ttt_settings"]
    assert settings["decode_kernel"]["value"] == "graphed" and settings["ttt_kernel"]["value"] == "auto"
    assert json.loads(graphed.stdout)["answer"] == answer["answer"]


def test_info_shows_the_architecture_and_the_processor(cli, tiny_folder):
    result = cli("info", tiny_folder)
    assert result.exit_code == 0, result.output
    for text in ("spatial_ttt layout", "0/1/2/4/5/6", "3/7", "parameters (TTT", "processor files", "present"):
        assert text in result.stdout


def test_convert_wraps_a_qwen3vl_checkpoint_into_a_usable_model_folder(cli, tmp_path, video):
    import torch
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    from spatial_ttt.tiny import tiny_config
    from spatial_ttt.video import make_tiny_processor

    spatial = tiny_config()
    config = Qwen3VLConfig(
        text_config=spatial.text_config.to_dict(), vision_config=spatial.vision_config.to_dict(),
        image_token_id=500, video_token_id=501, vision_start_token_id=502, vision_end_token_id=503,
    )
    torch.manual_seed(0)
    Qwen3VLForConditionalGeneration(config).save_pretrained(tmp_path / "qwen")
    make_tiny_processor(tmp_path / "qwen")

    info = cli("info", tmp_path / "qwen")
    assert info.exit_code == 0 and "spatial-ttt convert" in info.stdout

    result = cli("convert", tmp_path / "qwen", tmp_path / "out", "--settings", '{"lact_chunk_size": 16}')
    assert result.exit_code == 0, result.output
    assert "processor files copied" in result.stderr
    info = cli("info", tmp_path / "out")
    assert info.exit_code == 0 and "present" in info.stdout
    assert re.search(r"lact_chunk_size +│ 16 +│ checkpoint config", info.stdout), info.stdout
    answer = cli("ask", tmp_path / "out", video, "How many chairs?", "--size", SMALL, "--num-frames", "4",
                 "--max-new-tokens", "2")
    assert answer.exit_code == 0, answer.output

    again = cli("convert", tmp_path / "qwen", tmp_path / "out")
    assert again.exit_code == 2 and "exists and is not empty" in again.stderr
    bad = cli("convert", tmp_path / "qwen", tmp_path / "out2", "--settings", "{oops")
    assert bad.exit_code == 2 and "--settings is not valid JSON" in bad.stderr
    wrong = cli("convert", tmp_path / "out", tmp_path / "out3")
    assert wrong.exit_code == 2 and "expected 'qwen3_vl'" in wrong.stderr


# -------------------------------------------------------------------------------------------------- errors


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == ""
    return result.stderr


def test_corrupt_video(cli, tiny_folder, corrupt_video):
    err = _error(cli("ask", tiny_folder, corrupt_video, "How many chairs?"))
    assert str(corrupt_video) in err and "corrupt" in err


def test_empty_image_folder(cli, tiny_folder, tmp_path):
    err = _error(cli("ask", tiny_folder, tmp_path, "How many chairs?"))
    assert "no image files" in err and str(tmp_path) in err


def test_missing_model_folder(cli, tmp_path, video):
    err = _error(cli("ask", tmp_path / "nowhere", video, "How many chairs?"))
    assert f"model folder not found: {tmp_path / 'nowhere'}" in err


def test_folder_that_is_not_a_model(cli, tmp_path, video):
    (tmp_path / "notes.txt").write_text("hello")
    err = _error(cli("ask", tmp_path, video, "How many chairs?"))
    assert f"{tmp_path}: no config.json (is this a model folder?)" in err
    assert "no config.json" in _error(cli("info", tmp_path))


def test_checkpoint_with_a_misshaped_tensor(cli, misshaped_folder, video):
    err = _error(cli("ask", misshaped_folder, video, "How many chairs?"))
    assert "mis-shaped keys: model.language_model.layers.0.self_attn.w0" in err
    assert "mis-shaped keys" in _error(cli("info", misshaped_folder))


def test_model_folder_without_processor_files(cli, tmp_path, video, tiny_folder):
    import shutil

    folder = tmp_path / "bare"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_folder / name, folder / name)
    err = _error(cli("ask", folder, video, "How many chairs?"))
    assert f"processor folder {folder} lacks: tokenizer.json" in err and "pass a processor folder" in err
    ok = cli("ask", folder, video, "How many chairs?", "--processor", tiny_folder, "--size", SMALL,
             "--num-frames", "4", "--max-new-tokens", "1")
    assert ok.exit_code == 0, ok.output


def test_processor_that_does_not_fit_the_checkpoint(cli, tmp_path, video):
    folder = make_tiny_model_folder(tmp_path / "shifted", video_token_id=499)
    err = _error(cli("ask", folder, video, "How many chairs?"))
    assert "the processor does not fit the checkpoint" in err and "video_token_id: model 499, processor 501" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "chair"], 'write each option as a letter, a dot and the text, e.g. "A. chair"'),
        (["--size", "100x100"], "multiples of 32"),
        (["--size", "big"], "--size must look like 352x480"),
        (["--fps", "0"], "--fps must be positive"),
        (["--fps", "2", "--num-frames", "8"], "give --fps or --num-frames, not both"),
        (["--dtype", "int8"], "--dtype must be one of"),
        (["--raw", "-o", "A. chair"], "--raw sends the question as it is"),
        (["--device", "toaster"], "--device 'toaster' is not a torch device"),
    ],
)
def test_bad_options(cli, tiny_folder, video, args, message):
    assert message in _error(cli("ask", tiny_folder, video, "How many chairs?", *args))


def test_option_out_of_range_is_a_usage_error(cli, tiny_folder, video):
    result = cli("ask", tiny_folder, video, "How many chairs?", "--max-new-tokens", "0")
    assert result.exit_code == 2 and "--max-new-tokens" in result.output


# -------------------------------------------------------------------------------------------------- eval / data


def test_eval_runs_vsibench_on_a_model_folder(cli, tiny_folder, tmp_path):
    from spatial_ttt.demo import write_synthetic_video

    root = tmp_path / "VSI-Bench"
    (root / "scannet").mkdir(parents=True)
    # 4 frames: the evaluation's setting (16 fps, frames resized to 352x480) keeps all 4, 330 video tokens
    write_synthetic_video(root / "scannet" / "scene0.mp4", seconds=2.0, fps=2, size=(64, 96))
    records = [
        {"id": 1, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_counting",
         "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "2"},
        {"id": 2, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_rel_distance",
         "question": "Which is closest to the door?", "options": ["A. chair", "B. table"], "ground_truth": "A"},
    ]
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    result = cli("eval", "vsibench", "--data", root, "--model", tiny_folder, "--out", tmp_path / "run",
                 "--max-new-tokens", "2")
    assert result.exit_code == 0, result.output
    assert "object_counting" in result.stdout or "counting" in result.stdout.lower()


def test_eval_with_a_folder_that_is_not_a_model(cli, tmp_path):
    from tests.eval.eval_fixtures import VSIBENCH_CASES, touch, write_jsonl

    root = tmp_path / "VSI-Bench"
    write_jsonl(root / "test.jsonl", [r for r, _ in VSIBENCH_CASES])
    touch(root / "scannet" / "scene0.mp4")
    touch(root / "arkitscenes" / "scene1.mp4")
    result = cli("eval", "vsibench", "--data", root, "--model", tmp_path / "nowhere", "--out", tmp_path / "run")
    assert result.exit_code == 2
    assert f"model folder not found: {tmp_path / 'nowhere'}" in result.stderr


def test_data_commands_are_wired(cli):
    result = cli("data", "--help")
    assert result.exit_code == 0
    for command in ("synth", "qa", "validate"):
        assert command in result.stdout
