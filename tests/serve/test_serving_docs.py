"""docs/serving.md's examples, run exactly as written (with the tiny model as the folder MODEL)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs/serving.md"
SRC = Path(__file__).resolve().parents[2] / "src"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


def run(command: list[str], folder: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=str(SRC), OMP_NUM_THREADS="1")
    return subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=300)


def test_curl_example(model_dir, tmp_path):
    (script,) = blocks("bash")
    (tmp_path / "MODEL").symlink_to(model_dir)
    done = run(["bash", "-euo", "pipefail", "-c", script], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"id":"kitchen"' in done.stdout and "event: token" in done.stdout and "event: done" in done.stdout
    assert (tmp_path / "kitchen.tar").stat().st_size > 0
    assert not (tmp_path / "sessions/kitchen").exists()  # deleted at the end


def test_python_client_example(model_dir, tmp_path):
    (script,) = blocks("python")
    (tmp_path / "MODEL").symlink_to(model_dir)
    done = run([sys.executable, "-c", script], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()  # the streamed answer
    assert (tmp_path / "replica8002/walk/stream.safetensors").is_file()  # saved by the second replica at shutdown
    assert not (tmp_path / "replica8001/walk").exists()
