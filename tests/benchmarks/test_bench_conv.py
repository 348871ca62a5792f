"""benchmarks/bench_conv.py runs on the tiny shape (CPU: the eager reference only) and writes its JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_conv_tiny_writes_the_json(tmp_path):
    out = tmp_path / "conv.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_conv.py"), "--tiny", "--out", str(out), "--repeat", "3"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert (data["shape"], data["device"], data["channels"], data["grid_hw"]) == ("tiny", "cpu", 64, [3, 5])
    assert [(r["case"], r["frames_shape"]) for r in data["runs"]] == [
        ("prefill_piece", [1, 10, 3, 5, 64]), ("stream_4", [1, 4, 3, 5, 64])]
    for run in data["runs"]:
        assert run["bytes"] == 4 * 64 * 15 * (2 * run["groups"] + 2)  # fp32: frames read once, output written once
        assert abs(run["eager"]["gbps"] * run["eager"]["ms"] * 1e6 - run["bytes"]) < 1e-3 * run["bytes"]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
