"""benchmarks/first_answer.py on the CPU (--tiny): a fresh child process runs every step of a user's first minutes
(stream pieces, questions, two streams, a one-shot prompt) and counts the graphs dynamo compiles in each."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_first_answer_times_each_step_and_counts_its_compilations(tmp_path):
    out = tmp_path / "first_answer.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/first_answer.py"), "--tiny", "--dynamic", "true", "--pieces", "2",
           "--new-tokens", "3", "--long-tokens", "5", "--profile-steps", "ask_prefill", "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert "error" not in run, run.get("error")
    steps = {s["step"]: s for s in run["steps"]}
    assert list(steps) == [
        "build", "prefix", "piece_0", "piece_1", "ask_prefill", "ask_prefill_again", "ask_decode", "ask_decode_again",
        "ask_decode_long", "more_video", "ask_after_more", "ask_other_length", "two_streams_prefix", "two_streams_piece",
        "two_streams_ask", "oneshot_first", "oneshot_again", "oneshot_third"]
    assert all(s["seconds"] > 0 for s in steps.values())
    assert "decode_ms_per_token" in steps["ask_decode_long"]
    profile = (tmp_path / "profile_true_ask_prefill.txt").read_text()  # the step's host time, by function
    assert "Self CPU" in profile and "aten::" in profile
    assert steps["ask_decode"]["decode"]["kernel"] == "eager"  # the CPU's "auto"
    assert steps["piece_0"]["graphs"] > 0  # the graphed kernel's stages compile (aot_eager here)
    # the same shapes again compile nothing
    assert steps["ask_prefill_again"]["graphs"] == steps["ask_decode_again"]["graphs"] == steps["oneshot_again"]["graphs"] == 0


def test_stop_after_ends_the_child_after_that_step(tmp_path):
    out = tmp_path / "first_answer.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/first_answer.py"), "--tiny", "--dynamic", "auto", "--pieces", "1",
           "--stop-after", "piece_0", "--out", str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert "error" not in run and [s["step"] for s in run["steps"]] == ["build", "prefix", "piece_0"]
    assert run["steps"][-1]["triton_compiles"] == 0  # aot_eager on the CPU: Triton compiles nothing
    shown = subprocess.run([sys.executable, str(ROOT / "benchmarks/first_answer.py"), "--show", str(out)], env=env,
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    lines = shown.stdout.splitlines()  # what the device scripts print: a run's name, then one line per step
    assert lines[0].strip() == "auto" and [line.split()[0] for line in lines[1:]] == ["build", "prefix", "piece_0"]
    assert "triton" not in lines[1]  # the build step watches no compilation: it says none
    assert all(line.endswith(" graphs  triton 0 (0.00 s)") for line in lines[2:])
