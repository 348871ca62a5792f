"""benchmarks/evidence/resume_probe.py on the CPU: every resumed process repeats the uninterrupted steps exactly."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_resumed_processes_match_the_uninterrupted_run(make_config, tmp_path):
    values = dataclasses.asdict(make_config())
    data = values.pop("data_path")
    del values["output_dir"]
    values["save_total_limit"] = 1  # as the evidence configs: the probe must keep its resume point anyway
    (tmp_path / "probe.yaml").write_text(yaml.safe_dump(values))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/resume_probe.py"), str(tmp_path / "probe.yaml"), data,
           str(tmp_path / "out"), "--steps", "2", "--after", "2"]
    first = subprocess.run([*cmd, "--modes"], env=env, capture_output=True, text=True, timeout=600)  # one call...
    assert first.returncode == 0, first.stderr[-3000:]
    assert json.loads((tmp_path / "out" / "probe.json").read_text()).keys() == {"first"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # ...the modes in the next
    assert done.returncode == 0, done.stderr[-3000:]
    assert "== first: done before, kept" in done.stdout
    results = json.loads((tmp_path / "out" / "probe.json").read_text())
    assert list(results) == ["first", "default", "dynamic", "reference", "static"]
    first = [(r["step"], r["loss"], r["grad_norm"]) for r in results["first"]]
    assert [s for s, _, _ in first] == [3, 4]
    for mode in ("default", "dynamic", "reference", "static"):
        assert [(r["step"], r["loss"], r["grad_norm"]) for r in results[mode]] == first, mode
        assert not any(r.get("skipped") for r in results[mode])
    assert (tmp_path / "out" / "first" / "checkpoint-2").is_dir()  # the resume point outlives the final save
    assert "| reference | 4 |" in done.stdout and "| first | 3 |" in done.stdout
