"""The GPU's SM clock, power draw and clock-limiting reasons sampled while a call runs (NVML, nvidia-ml-py).

Used by prefill_ab.py --clocks. Why: in session 20 the anchors' stage ran 0.10-0.15 s shorter with "split" (cuDNN,
~430-600 TFLOP/s) while the TTT layers' stage grew by 0.01-0.06 s in the same rounds, on a GPU that never waited
for the host (profile_prefill.py --idle with flash). One candidate: the H200 lowering its clocks under the heavier
load (power cap), which would tax the kernels after it. NVML's counters refresh every 1/6 to 1 s, so this says
how a whole call ran (mean and lowest clock, mean power, which limits were active), not a stage.

Without NVML (the CPU, or nvidia-ml-py missing) a sampler records nothing and says why.
"""

from __future__ import annotations

import statistics
import threading
import time

# nvmlClocksEventReason* bits (nvml.h) worth naming; others are reported as their numbers
REASONS = {0x1: "gpu_idle", 0x4: "sw_power_cap", 0x8: "hw_slowdown", 0x20: "sw_thermal", 0x40: "hw_thermal",
           0x80: "hw_power_brake"}


class ClockSampler:
    """``with ClockSampler(device_index) as s: call()``, then ``s.summary()``: SM clock (MHz), power (W) and the
    clock-limiting reasons seen, sampled every ``period`` seconds on a thread while the block runs."""

    def __init__(self, device_index: int | None, period: float = 0.01) -> None:
        self.period, self.samples, self.reasons = period, [], set()
        self.handle, self.why_not = None, None
        if device_index is None:
            self.why_not = "no CUDA device"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml, self.handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception as error:  # no nvidia-ml-py, or no driver: the benchmark runs on without clocks
            self.why_not = f"NVML unavailable: {error}"

    def __enter__(self) -> "ClockSampler":
        if self.handle is not None:
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.stop.set()
            self.thread.join()

    def _run(self) -> None:
        nvml = self.nvml
        while not self.stop.is_set():
            clock = nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM)
            watts = nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000
            self.samples.append((clock, watts))
            self.reasons.add(int(nvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle)))
            time.sleep(self.period)

    def summary(self) -> dict:
        if not self.samples:
            return dict(samples=0, why_not=self.why_not or "no sample taken")
        clocks, watts = [s[0] for s in self.samples], [s[1] for s in self.samples]
        seen = {name for bits in self.reasons for bit, name in REASONS.items() if bits & bit}
        unnamed = sorted({bits & ~sum(REASONS) for bits in self.reasons} - {0})
        return dict(samples=len(clocks), sm_mhz_mean=round(statistics.fmean(clocks), 1), sm_mhz_min=min(clocks),
                    power_w_mean=round(statistics.fmean(watts), 1), power_w_max=round(max(watts), 1),
                    limits=sorted(seen) + [hex(bits) for bits in unnamed])
