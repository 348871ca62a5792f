"""The CLI on the authors' released layout: the TTT settings in effect with their sources, and overrides."""

from __future__ import annotations

import json
import shutil

import pytest

from spatial_ttt.video import make_tiny_processor

from .conftest import SMALL, run_cli


@pytest.fixture(scope="module")
def released_model(released_dir, tmp_path_factory):
    """The golden model in the released layout, with the tiny processor beside it (its ids match)."""
    folder = tmp_path_factory.mktemp("released") / "model"
    shutil.copytree(released_dir, folder)
    make_tiny_processor(folder)
    return folder


def test_info_json_gives_every_setting_and_its_source(cli, released_model):
    result = cli("info", released_model, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layout"] == "released"
    settings = info["ttt_settings"]
    assert settings["use_muon"] == {"value": False, "source": "released evaluation default"}
    assert settings["lact_chunk_size"] == {"value": 2648, "source": "released evaluation default"}
    assert settings["ttt_layers"] == {"value": [0, 1, 2, 4, 5, 6], "source": "read off tensors"}
    assert settings["num_lact_heads"] == {"value": 4, "source": "read off tensors"}


def test_overrides_from_the_command_line(cli, released_model):
    result = cli("info", released_model, "--json", "--muon", "--chunk-size", "40", "--window", "4096",
                 "--precision", "bf16", "--ttt", "ttt_kernel=reference", "--ttt", "ttt_base_lr=0.002",
                 "--ttt", "decode_kernel=graphed", "--ttt", "prefill_piece=8192", "--ttt", "mlp_piece=2048")
    assert result.exit_code == 0, result.output
    settings = json.loads(result.stdout)["ttt_settings"]
    expected = {"use_muon": True, "lact_chunk_size": 40, "window_size": 4096, "fast_weight_precision": "bf16",
                "ttt_kernel": "reference", "ttt_base_lr": 0.002, "decode_kernel": "graphed", "prefill_piece": 8192,
                "mlp_piece": 2048}
    for name, value in expected.items():
        assert settings[name] == {"value": value, "source": "override"}, name


@pytest.mark.parametrize("args, message", [
    (["--ttt", "chunk=40"], "error: --ttt chunk: unknown TTT setting (known: ttt_layers, num_lact_heads,"),
    (["--ttt", "use_muon"], "error: --ttt 'use_muon': write KEY=VALUE, e.g. --ttt lact_chunk_size=56"),
    (["--muon", "--ttt", "use_muon=false"], "error: --ttt use_muon is given twice"),
    (["--precision", "fp16"], "fast_weight_precision must be 'fp32' or 'bf16', not 'fp16'"),
    (["--ttt", "decode_kernel=fast"], "decode_kernel must be one of auto/eager/graphed, not 'fast'"),
    (["--ttt", "vision_patches=0"], "vision_patches must be a positive integer, got 0"),
])
def test_bad_overrides_exit_2_with_one_line(cli, released_model, args, message):
    result = cli("info", released_model, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and result.stdout == ""


def test_ask_on_a_released_folder_says_the_settings_in_effect(released_model, video):
    result = run_cli("ask", released_model, video, "How many chairs?", "--size", SMALL, "--num-frames", "4",
                     "--max-new-tokens", "2", "--chunk-size", "40", "--json")
    assert result.returncode == 0, result.stderr
    assert ("TTT settings: lact_chunk_size=40 (override), window_size=2648 (released evaluation default), "
            "use_muon=False (released evaluation default)") in result.stderr
    answer = json.loads(result.stdout)
    assert answer["ttt_settings"]["lact_chunk_size"] == {"value": 40, "source": "override"}
    assert answer["ttt_settings"]["use_muon"]["value"] is False


@pytest.fixture(scope="module")
def base_and_checkpoint(released_model, tmp_path_factory):
    """The reference's two-folder form: a Qwen3-VL folder (here: the vision tower only, with the processor files)
    and a checkpoint file holding everything else."""
    from safetensors.torch import load_file, save_file

    root = tmp_path_factory.mktemp("two_folders")
    base = root / "base"
    base.mkdir()
    shutil.copy(released_model / "config.json", base)
    make_tiny_processor(base)
    tensors = load_file(released_model / "model.safetensors")
    save_file({k: v for k, v in tensors.items() if k.startswith("model.visual.")}, base / "model.safetensors")
    checkpoint = root / "checkpoint.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.startswith("model.visual.")}, checkpoint)
    return base, checkpoint


def test_info_on_a_checkpoint_file_over_a_base_folder(cli, base_and_checkpoint):
    base, checkpoint = base_and_checkpoint
    result = cli("info", checkpoint, "--base", base, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["layout"] == "checkpoint over base"
    assert info["ttt_settings"]["num_lact_heads"] == {"value": 4, "source": "read off tensors"}
    alone = cli("info", base)
    assert alone.exit_code == 0 and "plain Qwen3-VL" in alone.stdout
    file_only = cli("info", checkpoint)
    assert file_only.exit_code == 2 and "pass base=QWEN3VL_FOLDER" in file_only.stderr


def test_ask_and_stream_over_a_base_folder_with_overrides(cli, base_and_checkpoint, video):
    base, checkpoint = base_and_checkpoint
    ask = cli("ask", checkpoint, video, "How many chairs?", "--base", base, "--size", SMALL, "--num-frames", "4",
              "--max-new-tokens", "2", "--muon", "--window", "4096")
    assert ask.exit_code == 0, ask.output
    assert "use_muon=True (override)" in ask.stderr and "window_size=4096 (override)" in ask.stderr
    stream = cli("stream", checkpoint, video, "--base", base, "--size", SMALL, "--fps", "2", "--chunk-frames", "2",
                 "--max-new-tokens", "2", "--ttt", "lact_chunk_size=16", "--at", "1", "How many chairs?")
    assert stream.exit_code == 0, stream.output
    assert "lact_chunk_size=16 (override), window_size=2648 (released evaluation default)" in stream.stderr
    assert stream.stdout.startswith("1\t")


def test_eval_loads_a_released_folder_and_says_the_settings(cli, released_model, tmp_path):
    from spatial_ttt.demo import write_synthetic_video

    root = tmp_path / "VSI-Bench"
    (root / "scannet").mkdir(parents=True)
    write_synthetic_video(root / "scannet" / "scene0.mp4", seconds=1.0, fps=2, size=(64, 96))
    record = {"id": 1, "dataset": "scannet", "scene_name": "scene0", "question_type": "object_counting",
              "question": "How many chair(s) are in this room?", "options": None, "ground_truth": "2"}
    (root / "test.jsonl").write_text(json.dumps(record) + "\n")
    result = cli("eval", "vsibench", "--data", root, "--model", released_model, "--out", tmp_path / "run",
                 "--max-new-tokens", "1")
    assert result.exit_code == 0, result.output
    assert "TTT settings: lact_chunk_size=2648 (released evaluation default)" in result.stderr


def test_convert_refuses_a_released_folder(cli, released_model, tmp_path):
    result = cli("convert", released_model, tmp_path / "out")
    assert result.exit_code == 2
    assert f"error: {released_model} is already Spatial-TTT (the released layout" in result.stderr
    assert not (tmp_path / "out").exists()
