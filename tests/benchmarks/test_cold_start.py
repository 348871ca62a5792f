"""benchmarks/cold_start.py on the CPU (--tiny): a fresh child process per kernel setting and cache state, each
timing its first answer and the same call again, with the same token everywhere."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cold_start_times_a_fresh_process_per_setting_and_cache_state(tmp_path):
    out = tmp_path / "cold_start.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/cold_start.py"), "--tiny", "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    runs = json.loads(out.read_text())["runs"]
    assert [(r["kernel"], r["cache"]) for r in runs] == [
        ("reference", "cold"), ("reference", "warm"), ("auto", "cold"), ("auto", "warm")]
    assert not any("error" in r for r in runs)
    assert len({r["token"] for r in runs}) == 1
    assert all(0 < r["first_s"] <= r["process_s"] <= r["child_wall_s"] and r["again_s"] > 0 for r in runs)
