"""benchmarks/bench_e2e.py runs end to end on the tiny shape (CPU) and writes every field RESULTS.md reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_e2e_tiny_writes_the_json(tmp_path):
    out = tmp_path / "e2e.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_e2e.py"), "--tiny", "--out", str(out), "--frames", "4",
           "--precisions", "bf16", "--decode-tokens", "1", "--stream-frames", "8"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["shape"] == "tiny" and data["env"]["device"] == "cpu"
    assert [(r["model"], r["frames"]) for r in data["runs"]] == [("ours_bf16", 4), ("plain", 4)]
    for run in data["runs"]:
        assert "error" not in run, run
        assert run["tokens"] == 10 + 2 * (5 + 1 + 4 + 1) + 20  # 2 groups of 64x64 frames: 4 video tokens each
        assert {"prefill_s", "decode_ms", "peak_gib", "state_gib", "retained_gib", "warmup_s"} <= run.keys()
    assert data["runs"][0]["decode_kernel"] == "eager"  # auto on the CPU
    assert [(r["model"], r["frames"]) for r in data["ratios"]] == [("ours_bf16", 4)]
    (stream,) = data["streams"]
    assert "error" not in stream, stream
    assert stream["frames"] == 8 and stream["piece_frames"] == 4 and stream["frames_per_s"] > 0
    assert "ours_bf16 / plain at 4 frames: prefill x" in result.stdout
