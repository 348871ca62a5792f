"""benchmarks/cpu_memory.py measures a generate call's tensor memory on the CPU; its state holds what it must."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_memory_reports_peak_retained_and_the_state_by_kind(tmp_path):
    out = tmp_path / "memory.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/cpu_memory.py"), "--frames", "64", "--piece-tokens", "128", "1000",
           "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    small, whole = data["runs"]  # 32 groups of 16 tokens in pieces of <= 128 tokens; one forward
    for run in (small, whole):
        assert run["prompt_tokens"] == 10 + 32 * (5 + 1 + 16 + 1) + 20
        assert run["state_by_kind_mib"] == run["expected_mib"]  # anchor KV reserved in whole blocks of 32
        kept = run["state_mib"] + run["kept_by_model_mib"]  # + the vision inputs of the call's new grids
        assert 0 < run["kept_by_model_mib"] and kept < run["retained_mib"] < kept + 0.01  # + the returned tokens
        assert run["peak_mib"] > run["retained_mib"] and run["at_peak"]["by_site"]
    assert small["token"] == whole["token"]  # the same numbers in pieces
    assert small["peak_mib"] < whole["peak_mib"]  # the activations of a piece, not of the whole prompt
