"""benchmarks/conv_sass.py compiles the stencil for sm_90 on the CPU and counts its machine instructions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[2]


def test_conv_sass_counts_27_fmas_per_element_of_a_threads_tile(tmp_path):
    out = tmp_path / "sass.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/conv_sass.py"), "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["target"] == "sm_90" and len(data["runs"]) == 4
    for run in data["runs"]:
        tile = run["tile"]
        per_thread = tile["block_hw"] * tile["block_channels"] // (32 * tile["num_warps"])
        assert run["ffma"] == 27 * per_thread  # the frame loop's body once: 27 taps for each element a thread holds
        assert run["instructions"] > run["ffma"] and run["spills"] >= 0
    bf16, fp32 = data["runs"][1:3]  # the default tile, the weight as bf16 and as fp32
    assert bf16["tile"] == fp32["tile"] and fp32["instructions"] < bf16["instructions"]
