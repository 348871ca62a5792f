"""benchmarks/profile_decode.py runs on the tiny shape (CPU), as a user runs it, and writes consistent numbers."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_profile_decode_tiny_writes_consistent_numbers(tmp_path):
    out = tmp_path / "profile_decode.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/profile_decode.py"), "--tiny", "--prompt-tokens", "40",
           "--tokens", "45", "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert not list(tmp_path.glob("*.tmp"))  # written atomically
    assert (data["shape"], data["device"], data["precision"]) == ("tiny", "cpu", "bf16")
    assert (data["kernel"], data["captured"]) == ("graphed", False)  # the static step, uncaptured on the CPU
    assert (data["prompt_tokens"], data["tokens"], data["fed"], data["replays"]) == (40, 45, 44, 44)
    # chunk 40, the decode rule: an update after the 1st fed token (the prompt's last 40 + 1 pending), then the 41st
    assert data["updates"] == len(data["update_ms"]) == 2 and min(data["update_ms"]) > 0
    assert abs(data["update_ms_per_token"] - sum(data["update_ms"]) / 44) < 1e-9
    assert data["decode_s"] > data["setup_s"] > 0 and data["prefill_s"] > 0
    assert abs(data["ms_per_token"] - 1e3 * data["decode_s"] / 44) < 1e-9
    assert abs(data["ms_per_token_steady"] - 1e3 * (data["decode_s"] - data["setup_s"]) / 44) < 1e-9
    # the replays are part of the decode: the rest of a token is what they leave of it
    assert 0 < data["replay_ms"] and 0 < data["replay_ms_mean"] < data["ms_per_token_steady"]
    assert abs(data["host_ms_per_token"] - (data["ms_per_token_steady"] - data["replay_ms_mean"])) < 1e-9
    assert data["host_ms_per_token"] >= data["update_ms_per_token"]
    assert data["kernels_per_replay"] is None and data["replay_kernels"] is None  # CUDA kernels: GPU only
    assert data["same_tokens"] is True
    assert "40 prompt tokens, 44 fed:" in result.stdout
