"""benchmarks/bench_e2e.py runs end to end on the tiny shape (CPU) and writes every field RESULTS.md reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_e2e_tiny_writes_the_json(tmp_path):
    out = tmp_path / "e2e.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_e2e.py"), "--tiny", "--out", str(out), "--frames", "4",
           "--precisions", "bf16", "--decode-tokens", "1", "--stream-frames", "8", "--pixels", "pipeline", "host", "device",
           "--trace-peak", "--repeats", "2"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["shape"] == "tiny" and data["env"]["device"] == "cpu"
    runs = [(r["model"], r["frames"], r["pixels"]) for r in data["runs"]]
    assert runs == [("ours_bf16", 4, "pipeline"), ("ours_bf16", 4, "host"), ("ours_bf16", 4, "device"),
                    ("plain", 4, "device")]
    for run in data["runs"]:
        assert "error" not in run, run
        assert run["tokens"] == 10 + 2 * (5 + 1 + 4 + 1) + 20  # 2 groups of 64x64 frames: 4 video tokens each
        assert {"prefill_s", "vision_s", "decode_ms", "peak_gib", "state_gib", "retained_gib", "warmup_s"} <= run.keys()
        # the decode phase timed by itself (ours: around generation.decode; plain: from its streamer), inside generate
        assert 0 < run["decode_ms"] * 1 / 1e3 < run["generate_s"]
        # --repeats 2: two timed prefills and vision tower calls, their medians reported
        assert len(run["prefill_s_all"]) == len(run["vision_s_all"]) == 2
        assert run["prefill_s"] == sum(run["prefill_s_all"]) / 2 and run["vision_s"] == sum(run["vision_s_all"]) / 2
    assert data["runs"][0]["decode_kernel"] == "eager"  # auto on the CPU
    at_peak = data["runs"][0]["at_peak"]  # the peak's biggest allocations, by the line that made them
    assert at_peak["bytes"] > 0 and 0 < sum(at_peak["by_site"].values()) <= at_peak["gib"]
    assert all(".py:" in site for site in at_peak["by_site"])
    ours = data["runs"][0]
    assert ours["state_by_kind_gib"] == ours["state_expected_gib"]  # the state holds what it must, nothing else
    # the same tokens wherever the processor wrote the pixels; ours timed its processor (plain's is not ours)
    assert len(data["runs"][0]["new_tokens"]) == 2
    assert data["runs"][0]["new_tokens"] == data["runs"][1]["new_tokens"] == data["runs"][2]["new_tokens"]
    assert all(r["processor_s"] > 0 and r["processor_first_s"] > 0 for r in data["runs"][:3])
    assert "processor_s" not in data["runs"][3]
    assert [(r["model"], r["frames"], r["pixels"]) for r in data["ratios"]] == [
        ("ours_bf16", 4, "pipeline"), ("ours_bf16", 4, "host"), ("ours_bf16", 4, "device")]
    (stream,) = data["streams"]
    assert "error" not in stream, stream
    assert stream["frames"] == 8 and stream["piece_frames"] == 4 and stream["frames_per_s"] > 0
    assert stream["input"] == "uint8 frames"
    assert stream["ask_s"] > 0 and stream["ask_again_s"] > 0 and "ask_again_peak_gib" in stream  # peaks: GPU only
    assert "ours_bf16 (host pixels) / plain at 4 frames: prefill x" in result.stdout
    assert "ours_bf16 at 4 frames (pipeline pixels): processor " in result.stdout


@pytest.mark.parametrize("stream", [False, True])
def test_profile_prefill_tiny_times_every_stage(tmp_path, stream):
    out = tmp_path / "profile.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/profile_prefill.py"), "--tiny", "--out", str(out), "--idle"] + ["--stream"] * stream
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    # generate: 4 groups of 64x64 frames with the prompt's text; stream: 2 pieces of 2 groups, video only
    assert data["tokens"] == (2 * 2 * (5 + 1 + 4 + 1) if stream else 10 + 4 * (5 + 1 + 4 + 1) + 20)
    assert data["what"] == ("stream" if stream else "generate") and data["frames_per_s"] > 0
    stages = data["stages_s"]
    assert set(stages) == {"vision tower", "mlp", "anchor layer: attention", "ttt layer: attention + fast-weight branch",
                           "  of which: fast-weight branch (prologue, memory, epilogue)",
                           "  of which: sliding-window attention", "span: first stage start to last stage end",
                           "span not in a stage"} | (  # observing predicts nothing; a stream's TTT layers project
                           {"lm head"} if not stream else {"ttt layer: norm, projections, spatial conv (stream engine)"})
    assert 0 < stages["span not in a stage"] < stages["span: first stage start to last stage end"]
    parts = stages["  of which: fast-weight branch (prologue, memory, epilogue)"] + stages["  of which: sliding-window attention"]
    assert 0 < parts <= stages["ttt layer: attention + fast-weight branch"]
    assert data["top_kernels"] and data["top_kernels"][0]["seconds"] > 0
    # on the CPU no kernel runs on a device: the whole labelled call is "idle", charged to the host stages that ran
    idle = data["gpu_idle_s"]
    assert idle["busy"] == 0 and idle["idle"] == idle["total"] > 0
    assert "mlp" in idle["idle_by_stage"] and "chunk loop (rest)" in idle["idle_by_stage"]
    assert sum(idle["idle_by_stage"].values()) <= idle["idle"] + 1e-3
    assert idle["device_by_stage"] == {}  # no device work to charge to a stage


def test_bench_e2e_times_each_anchor_attention_setting_on_one_model(tmp_path):
    """--anchor-attention: each value timed in turn (runs and streams labelled); on the CPU all run one path."""
    out = tmp_path / "e2e.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/bench_e2e.py"), "--tiny", "--out", str(out), "--frames", "4",
           "--models", "ours", "--precisions", "bf16", "--decode-tokens", "1", "--stream-frames", "8",
           "--anchor-attention", "flash", "split"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [(r["anchor_attention"], r["frames"]) for r in data["runs"]] == [("flash", 4), ("split", 4)]
    assert [s["anchor_attention"] for s in data["streams"]] == ["flash", "split"]
    assert data["runs"][0]["new_tokens"] == data["runs"][1]["new_tokens"]
    assert all("error" not in entry for entry in data["runs"] + data["streams"])
