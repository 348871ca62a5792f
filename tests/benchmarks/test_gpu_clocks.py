"""benchmarks/gpu_clocks.py: the clock sampler against a stand-in NVML module (the CPU has none), and its summary
on hand-made samples."""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from gpu_clocks import ClockSampler  # noqa: E402


def fake_nvml(clocks: list[int]) -> types.ModuleType:
    """NVML as pynvml exposes it: the SM clock steps through ``clocks`` (then stays at the last), 350 W, power cap
    (0x4) and an unnamed bit (0x100) reported."""
    module = types.ModuleType("pynvml")
    module.NVML_CLOCK_SM = 1
    reads = iter(clocks)
    module.nvmlInit = lambda: None
    module.nvmlDeviceGetHandleByIndex = lambda index: f"gpu{index}"
    module.nvmlDeviceGetClockInfo = lambda handle, kind: next(reads, clocks[-1])
    module.nvmlDeviceGetPowerUsage = lambda handle: 350_000  # milliwatts
    module.nvmlDeviceGetCurrentClocksEventReasons = lambda handle: 0x4 | 0x100
    return module


def test_samples_while_the_block_runs(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml([1980, 1500, 1700]))
    with ClockSampler(0, period=0.001) as sampler:
        time.sleep(0.05)
    count = len(sampler.samples)
    time.sleep(0.01)
    assert len(sampler.samples) == count  # the thread stopped with the block
    summary = sampler.summary()
    assert summary["samples"] == count >= 3
    assert summary["sm_mhz_min"] == 1500
    assert summary["power_w_mean"] == summary["power_w_max"] == 350.0
    assert summary["limits"] == ["sw_power_cap", "0x100"]


def test_summary_of_hand_made_samples():
    sampler = ClockSampler(None)
    sampler.samples = [(1980, 300.0), (1500, 700.0), (1740, 500.0)]
    sampler.reasons = {0x0, 0x40 | 0x4}
    assert sampler.summary() == dict(samples=3, sm_mhz_mean=1740.0, sm_mhz_min=1500, power_w_mean=500.0,
                                     power_w_max=700.0, limits=["hw_thermal", "sw_power_cap"])


@pytest.mark.parametrize("device, why", [(None, "no CUDA device"), (0, "NVML unavailable")])
def test_without_nvml_it_records_nothing_and_says_why(monkeypatch, device, why):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails as if nvidia-ml-py were missing
    with ClockSampler(device) as sampler:
        pass
    summary = sampler.summary()
    assert summary["samples"] == 0 and summary["why_not"].startswith(why)
