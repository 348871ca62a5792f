"""benchmarks/prefill_ab.py runs on the CPU (tiny shape): every variant timed, the same answer under each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_prefill_ab_times_every_variant_with_the_same_answer(tmp_path):
    out = tmp_path / "ab.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/prefill_ab.py"), "--tiny", "--out", str(out), "--repeats", "2",
           "--frames", "8", "4"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [run["frames"] for run in data["runs"]] == [8, 4]
    variants = data["runs"][1]["variants"]
    assert list(variants) == [
        "now", "eager_vision", "rows_fp32", "vision_32", "vision_16", "anchor_flash", "piece_8k", "piece_32k", "lean", "eager_norms", "eager_rope",
        "weights_copied", "stages_dynamic", "before_s18", "before_s21", "before_s22", "conv3d_patches", "cloned_gaps",
        "tile_hw16", "tile_hw32_t16", "split_keys_8k", "gelu_apart", "norms_copied", "vision_per_call",
        "products_fp32", "products_tf32"]
    assert len({v["token"] for v in variants.values()}) == 1  # the settings change memory and time, not the answer
    assert all(v["prefill_s_median"] > 0 and v["vision_s"] > 0 for v in variants.values())
    assert all(len(v["prefill_s"]) == 2 for run in data["runs"] for v in run["variants"].values())
    rounds = [line for line in result.stdout.splitlines() if "round" in line]  # interleaved: one call per variant
    assert [line.split(":")[0] for line in rounds] == ["8 round 1/2", "8 round 2/2", "4 round 1/2", "4 round 2/2"]
    assert all(line.count("'eager_rope'") == 1 for line in rounds)


def test_prefill_ab_times_each_calls_stages(tmp_path):
    """--stages: per variant, the median of each timed call's stage times (on the CPU by the wall clock);
    --clocks: each timed call's clock record (on the CPU, none, and why)."""
    out = tmp_path / "ab.json"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    cmd = [sys.executable, str(ROOT / "benchmarks/prefill_ab.py"), "--tiny", "--out", str(out), "--repeats", "2",
           "--frames", "8", "--variants", "now", "anchor_flash", "--stages", "--clocks"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    variants = json.loads(out.read_text())["runs"][0]["variants"]
    for entry in variants.values():
        stages = entry["stages_s_median"]
        span = stages.pop("span: first stage start to last stage end")
        rest = stages.pop("span not in a stage")
        assert {"vision tower", "anchor layer: attention", "mlp"} <= set(stages)
        assert all(seconds > 0 for seconds in stages.values())
        assert sum(stages.values()) < 2 * entry["prefill_s_median"]  # parts of the call (nested ones counted twice)
        top = sum(seconds for name, seconds in stages.items() if not name.startswith(" "))  # (medians of 2: means)
        assert 0 < top < span <= entry["prefill_s_median"] and 0 < rest < span  # the span holds the stages
        assert entry["clocks"] == [{"samples": 0, "why_not": "no CUDA device"}] * 2  # --clocks: NVML on a GPU only


def test_prefill_ab_times_a_stream_with_the_same_memory_under_each_setting(tmp_path):
    """--stream FRAMES PIECE_FRAMES: the timed call is a stream of pieces; its checksum of what the TTT layers hold of
    the last tokens is the same under each anchor setting (on the CPU both run the same path) and with the stream
    engine's conv inputs gathered as before sessions 21 and 22, and differs from a stream of other frames."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'src'}{os.pathsep}{ROOT / 'benchmarks'}")
    sums = []
    for frames in (8, 4):
        out = tmp_path / f"ab{frames}.json"
        cmd = [sys.executable, str(ROOT / "benchmarks/prefill_ab.py"), "--tiny", "--out", str(out), "--repeats", "2",
               "--variants", "now", "anchor_flash", "before_s21", "before_s22", "--stages", "--stream", str(frames), "4"]
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-2000:]
        run = json.loads(out.read_text())["runs"][0]
        assert (run["what"], run["frames"]) == ("stream", frames)
        variants = run["variants"]
        assert all(len(v["prefill_s"]) == 2 and "anchor layer: attention" in v["stages_s_median"]
                   for v in variants.values())
        conv_inputs = "ttt layer: norm, projections, spatial conv (stream engine)"  # before the layer's call
        assert all(v["stages_s_median"][conv_inputs] > 0 for v in variants.values())
        assert len({variants[v]["token"] for v in ("now", "anchor_flash", "before_s21", "before_s22")}) == 1
        sums.append(variants["now"]["token"])
    assert sums[0] != sums[1]


def test_the_tf32_variant_runs_fp32_products_on_a_kernel_of_its_own_and_is_undone(monkeypatch):
    """products_tf32: fp32 products with TF32 allowed, on its own kernel object (its CUDA graphs must be captured
    with TF32 on, not replayed from another variant's), handed to every module that holds the kernel; "now" puts
    the model's own kernel, the fast mode and the TF32 flag back."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import torch

    import bench_e2e
    import prefill_ab
    from spatial_ttt.layers.ttt import TTTAttention

    model = bench_e2e.build_ours(bench_e2e.shape_tiny(), torch.device("cpu"), "bf16")
    own, flag = model.model.language_model.kernel, torch.backends.cuda.matmul.allow_tf32
    holders = [m for m in model.modules() if isinstance(m, TTTAttention)] + list(model.model.visual.blocks)

    def kernels() -> set[int]:
        return {id(m.kernel) for m in holders} | {id(model.model.language_model.kernel)}

    try:
        prefill_ab.apply("products_fp32", model)
        assert (model.config.fast_weight_precision, kernels()) == ("fp32", {id(own)})
        prefill_ab.apply("products_tf32", model)
        tf32 = model.model.language_model.kernel
        assert tf32 is not own and kernels() == {id(tf32)}
        assert model.config.fast_weight_precision == "fp32" and torch.backends.cuda.matmul.allow_tf32
        prefill_ab.restore(model)
        assert (model.config.fast_weight_precision, kernels()) == ("bf16", {id(own)})
        assert torch.backends.cuda.matmul.allow_tf32 == flag
        prefill_ab.apply("products_tf32", model)
        assert model.model.language_model.kernel is tf32  # one TF32 kernel per process: its graphs are kept
    finally:
        prefill_ab.restore(model)
