"""Fixtures for the CLI tests: a tiny model folder, small videos, and helpers to run the command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from spatial_ttt.demo import write_synthetic_video
from spatial_ttt.pipeline import make_tiny_model_folder

SRC = Path(__file__).resolve().parents[2] / "src"
SMALL = "64x96"  # frame size for fast runs: 2x3 merged tokens per frame pair


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m spatial_ttt ARGS` in a fresh process, as a user would run it."""
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("OMP_NUM_THREADS", "1")  # tiny models: threads only add waiting on a busy machine
    env.setdefault("COLUMNS", "200")  # rich would otherwise wrap long paths in messages
    return subprocess.run(
        [sys.executable, "-m", "spatial_ttt", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs its tiny models on one thread (tests/conftest.py's one_thread)."""
    yield


@pytest.fixture
def cli():
    """Invoke the Typer app in-process: cli("ask", ...) -> click Result (exit_code, stdout, stderr, output)."""
    from spatial_ttt.cli import app

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})

    return invoke


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """A complete tiny model folder (untrained checkpoint + processor)."""
    return make_tiny_model_folder(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> Path:
    """3 s of moving shapes at 8 fps, 64x96, MPEG-4."""
    return write_synthetic_video(tmp_path_factory.mktemp("videos") / "shapes.mp4", seconds=3.0, fps=8, size=(64, 96))


@pytest.fixture(scope="session")
def corrupt_video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "corrupt.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return path


@pytest.fixture(scope="session")
def misshaped_folder(tiny_folder, tmp_path_factory) -> Path:
    """The tiny model folder with one tensor of the wrong shape."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("models") / "misshaped"
    shutil.copytree(tiny_folder, folder)
    tensors = load_file(folder / "model.safetensors")
    key = "model.language_model.layers.0.self_attn.w0"
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 1, tensors[key].shape[2])
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    return folder
