"""benchmarks/bench_decode.py runs on the tiny shape (CPU) and writes every field the report reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_decode_tiny_writes_the_json(tmp_path):
    out = tmp_path / "decode.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_decode.py"), "--tiny", "--out", str(out), "--tokens", "40",
           "--new-tokens", "20", "--repeat", "1"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["shape"] == "tiny" and data["device"] == "cpu" and data["precision"] == "bf16"
    assert [(r["tokens"], r["kernel"]) for r in data["runs"]] == [(40, "eager"), (40, "graphed")]
    for run in data["runs"]:
        assert run["new_tokens"] == 20 and not run["captured"]  # on the CPU the static step is not captured
        assert run["ms_per_token"] >= run["ms_per_token_steady"] > 0 and run["first_call_s"] > 0
        # 40 prompt tokens, chunk 16, 19 fed: the decode crosses two chunk updates, and both kernels agree
        assert run["agree"] == {"equal": True, "first_difference": None}
    assert "40 tokens, graphed:" in result.stdout


def test_bench_decode_op_tiny_times_the_reference_over_the_visible_slots(tmp_path):
    out = tmp_path / "decode_op.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_decode.py"), "--op", "--tiny", "--out", str(out),
           "--op-slots", "100", "300:137", "50:80", "--repeat", "1"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["shape"] == "tiny" and data["device"] == "cpu" and data["layers"] == 7
    # on the CPU only the reference runs (the Triton kernel is CUDA's); "last" past the buffer: all 50 slots
    assert [(r["slots"], r["last"], r["kernel"]) for r in data["runs"]] == [
        (100, 99, "reference"), (300, 137, "reference"), (50, 80, "reference")]
    for run, visible in zip(data["runs"], (100, 138, 50)):
        # K and V of the visible slots: 2 KV heads x head dim 16 x fp32
        assert abs(run["gbps"] - 2 * 2 * visible * 16 * 4 / run["ms_per_layer"] / 1e6) < 1e-9 * run["gbps"]
    assert "300 slots (last 137), reference:" in result.stdout
    assert "fastest at 300 slots (last 137): reference, 1.0x the reference's speed" in result.stdout
