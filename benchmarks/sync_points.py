"""Where the user's prefill makes the host wait for the GPU: every synchronising CUDA call of one
`generate(max_new_tokens=1)` (bench_e2e.py's model and prompt, pipeline pixels), counted by the Python line that
made it. Each one drains the GPU's queue, and the GPU then idles while the host launches the next work (session
21: a profiled 1024-frame prompt's GPU idled 1.56 of 3.70 s).

    PYTHONPATH=src:benchmarks python benchmarks/sync_points.py --frames 1024 --out sync_points.json   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/sync_points.py --tiny --out sync_points.json           # CPU check

torch.cuda.set_sync_debug_mode("warn") warns at each synchronising call; the warnings are recorded with the line
of the innermost Python frame (torch's own Python frames are skipped to the caller). On the CPU nothing
synchronises: the script checks itself and reports none.
"""

from __future__ import annotations

import argparse
import collections
import traceback
import warnings
from pathlib import Path

import torch

import bench_e2e

REPO = Path(__file__).resolve().parents[1]  # callers' paths are given from here (or from site-packages)


def caller(stack: list[traceback.FrameSummary]) -> str:
    """The innermost frame outside torch's own Python code, as "path:line function"."""
    for frame in reversed(stack):
        if "/torch/" not in frame.filename and "warnings.py" not in frame.filename:
            path = frame.filename.removeprefix(f"{REPO}/").split("/site-packages/")[-1]
            return f"{path}:{frame.lineno} {frame.name}"
    return "(torch only)"


def sync_points(run, cuda: bool) -> collections.Counter:
    """{caller: count} of the synchronising CUDA calls ``run()`` makes."""
    found: collections.Counter = collections.Counter()

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchronizing" in str(message):
            found[caller(traceback.extract_stack()[:-1])] += 1

    with warnings.catch_warnings():  # which puts the original showwarning back
        warnings.simplefilter("always")
        warnings.showwarning = record
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--frames", type=int, default=None, help="default 1024 (8 with --tiny)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    shape = bench_e2e.shape_tiny() if args.tiny else bench_e2e.shape_2b()
    model = bench_e2e.build_ours(shape, device, "bf16")
    frames = args.frames or (8 if args.tiny else 1024)
    inputs = bench_e2e.place(bench_e2e.prompt(shape, frames // 2), device, "pipeline", model.model.visual.dtype)
    run = lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1))  # noqa: E731
    run()  # compilations, graph captures, cuDNN plans: their synchronisations are a first call's
    found = sync_points(run, device.type == "cuda")
    result = dict(environment=bench_e2e.environment(device), frames=frames, tokens=int(inputs["input_ids"].shape[1]),
                  synchronisations=sum(found.values()), by_line=dict(found.most_common()))
    bench_e2e.write_json(args.out, result)
    print(result["synchronisations"], "synchronising calls")
    for where, count in found.most_common(40):
        print(f"{count:6d}  {where}")


if __name__ == "__main__":
    main()
