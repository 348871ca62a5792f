"""benchmarks/sync_points.py: synchronising calls counted by the line that made them; runs on the CPU."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
from sync_points import sync_points  # noqa: E402


def synchronise():
    warnings.warn("called a synchronizing CUDA operation")  # what torch's sync debug mode "warn" says


def test_each_synchronising_call_is_counted_by_its_callers_line():
    def run():
        for _ in range(3):
            synchronise()
        warnings.warn("something else")

    found = sync_points(run, cuda=False)
    line = synchronise.__code__.co_firstlineno + 1
    assert found == {f"tests/benchmarks/test_sync_points.py:{line} synchronise": 3}


def test_the_script_runs_on_the_cpu_and_finds_no_synchronisation(tmp_path):
    out = tmp_path / "sync.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks/sync_points.py"), "--tiny", "--out", str(out)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert (data["frames"], data["synchronisations"], data["by_line"]) == (8, 0, {})
