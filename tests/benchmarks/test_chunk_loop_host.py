"""benchmarks/chunk_loop_host.py runs on the CPU: the chunk loop's host time per chunk, the steps stubbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chunk_loop_host_times_the_loop(tmp_path):
    out = tmp_path / "host.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/chunk_loop_host.py"), "--chunks", "12", "--repeats", "2",
           "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["chunks"] == 12 and data["chunk"] == 16
    assert 0 < data["us_per_chunk"] < 1e5
