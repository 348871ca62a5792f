"""benchmarks/count_ops.py counts launches on the CPU the way the GPU runs them (tiny shape, seconds)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")


def run(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks/count_ops.py"), "--tiny", *args]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def test_count_ops_tiny_counts_prefill_one_forward_and_stream(tmp_path):
    out = tmp_path / "counts.json"
    result = run("--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["settings"]["kernel"] == "graphed" and data["settings"]["piece_tokens"] == 60
    # 10 prefix + 12 groups x (5 timestamp + start + 4 video + end) + 20 suffix; the stream: 3 pieces of 4 groups
    assert [data[k]["tokens"] for k in ("generate", "one_forward", "stream")] == [162, 162, 132]
    for key in ("generate", "one_forward", "stream"):
        counts = data[key]
        ops, sites = counts["ops"], counts["sites"]
        assert counts["launches"] == sum(ops.values())
        assert counts["launches_per_1k_tokens"] == round(counts["launches"] * 1000 / counts["tokens"], 1)
        assert ops["[graph replay]"] > 0  # a replay is one launch
        assert not [s for s in sites if "swiglu_descent" in s or "fast_weight_update" in s]  # inside the graph
        assert ops["[compiled branch_prologue]"] == ops["[compiled branch_epilogue]"] > 0  # compiled: one each
        assert counts["host_ops"] > 0 and not [s for s in sites if "positions.py" in s]  # rope positions: host
        assert "view" not in ops and "transpose" not in ops  # no kernel
    assert data["one_forward"]["launches"] < data["generate"]["launches"]  # pieces cost their bookkeeping
    assert "StreamSession.observe_tokens: 132 tokens" in result.stdout


def test_count_ops_refuses_a_prompt_within_one_piece(tmp_path):
    result = run("--piece-tokens", "1000", "--out", str(tmp_path / "counts.json"))
    assert result.returncode == 2
    assert "error: the prompt (162 tokens) must span several pieces of 1000" in result.stderr
    assert not (tmp_path / "counts.json").exists()
