"""gpu_idle.py: idle time between kernels, charged to the innermost host stage, on hand-made timelines."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from gpu_idle import device_by_stage, gaps, idle_by_stage, merge  # noqa: E402


def test_merge_and_gaps():
    assert merge([(5, 7), (0, 2), (1, 3), (7, 8)]) == [(0, 3), (5, 8)]
    assert gaps([(0, 3), (5, 8)], (0, 10)) == [(3, 5), (8, 10)]
    assert gaps([(2, 4)], (3, 6)) == [(4, 6)]
    assert gaps([], (1, 2)) == [(1, 2)]


def test_idle_goes_to_the_innermost_open_stage():
    # call [0, 20]; kernels busy [2, 5] and [9, 12]: idle [0, 2], [5, 9], [12, 20] = 14
    # stages: layer [1, 15] holding norm [4, 7] and mlp [11, 14]
    kernels = [(2, 4), (3, 5), (9, 12)]
    stages = [("call", 0, 20), ("layer", 1, 15), ("norm", 4, 7), ("mlp", 11, 14)]
    found = idle_by_stage(kernels, stages, (0, 20))
    assert (found["total"], found["busy"], found["idle"]) == (20, 6, 14)
    # call: [0,1] + [15,20] = 6; layer: [1,2] + [7,9] + [14,15] = 4; norm: [5,7] = 2; mlp: [12,14] = 2
    assert found["idle_self"] == pytest.approx({"call": 6, "layer": 4, "norm": 2, "mlp": 2})
    assert list(found["idle_self"]) == ["call", "layer", "norm", "mlp"]  # largest first


def test_idle_outside_every_stage_is_said_so():
    found = idle_by_stage([(0, 1)], [("a", 2, 3)], (0, 4))
    assert found["idle_self"] == pytest.approx({"(no stage)": 2, "a": 1})


def test_device_time_goes_to_the_innermost_stage_that_launched_it():
    # layer [1, 15] holding norm [4, 7]; launches at host times 0 (no stage), 2 and 14 (layer), 4 and 6 (norm),
    # 15 (the layer has ended: ends come before anything at the same moment)
    stages = [("layer", 1, 15), ("norm", 4, 7)]
    launches = [(0, 1.0), (2, 2.0), (4, 4.0), (6, 8.0), (14, 16.0), (15, 32.0)]
    assert device_by_stage(launches, stages) == {"(no stage)": 33.0, "layer": 18.0, "norm": 12.0}
    assert device_by_stage([], stages) == {}


def test_the_gpu_timelines_copies_of_labels_are_not_device_work():
    """The profiler puts each labelled range on the GPU's timeline too (a user annotation as long as the work in
    it): counted as a kernel, a label over the whole call left no idle time at all."""
    from types import SimpleNamespace

    import torch
    from gpu_idle import launches, profiled_intervals

    def event(name, start, end, cpu, annotation=False, kernels=()):
        device = torch.autograd.DeviceType.CPU if cpu else torch.autograd.DeviceType.CUDA
        return SimpleNamespace(name=name, time_range=SimpleNamespace(start=start, end=end), device_type=device,
                               is_user_annotation=annotation, kernels=[SimpleNamespace(duration=d) for d in kernels])

    prof = SimpleNamespace(events=lambda: [
        event("stage: call", 0, 100, cpu=True), event("aten::mm", 10, 12, cpu=True, kernels=[30]),
        event("stage: call", 5, 95, cpu=False, annotation=True), event("gemm", 20, 50, cpu=False)])
    kernels, stages, span = profiled_intervals(prof, "stage: call")
    assert kernels == [(20, 50)] and span == (0, 100) and [s[0] for s in stages] == ["stage: call"]
    assert idle_by_stage(kernels, stages, span)["idle"] == 70
    assert launches(prof) == [(10, 30)]
