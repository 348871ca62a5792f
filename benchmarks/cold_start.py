"""Time to the first answer in a fresh process: what a one-off command pays before its first token, per kernel
setting, with a cold and then a warm compile cache. Decides the CLI's one-off default (``ttt_kernel="reference"``
for ``ask`` and ``stream``, docs/model.md), which was set from component measurements, not from this.

    PYTHONPATH=src:benchmarks python benchmarks/cold_start.py --frames 1024 --out cold_start.json   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/cold_start.py --tiny --out cold_start.json          # CPU check

For each ``--kernels`` value and each cache state, one child process (a fresh interpreter, as a CLI call is):
builds bench_e2e's random model (2B shape, bf16; --tiny: the tiny shape on the CPU), processes uint8 frames and
times ``generate(max_new_tokens=1)`` twice: ``first_s`` (compilation included: the one-off's wait) and
``again_s`` (the same call compiled). ``process_s``: the child's wall clock from start to its first token,
imports and model building included. The compile caches (inductor's and triton's) live in a directory of this
run: "cold" is its first child per kernel setting, "warm" a second child on the same directory.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import child_environment
from spatial_ttt.files import atomic_write_json

CHILD = "--child"


def child(frames: int, kernel: str, tiny: bool) -> dict:
    """One fresh process's measurement (runs in the child)."""
    began = time.perf_counter()
    import torch

    import bench_e2e

    device = torch.device("cpu" if tiny else "cuda")
    shape = bench_e2e.shape_tiny() if tiny else bench_e2e.shape_2b()
    model = bench_e2e.build_ours(shape, device, "bf16", ttt_kernel=kernel)
    inputs = {k: v.to(device) for k, v in bench_e2e.prompt(shape, frames // 2, pixels=False).items()}
    inputs["pixel_values_videos"] = bench_e2e.process(bench_e2e.video_processor(shape),
                                                      bench_e2e.video_frames(shape, frames // 2), "pipeline",
                                                      model.model.visual.dtype, device)

    def first_token() -> tuple[int, float]:
        start = time.perf_counter()
        with torch.inference_mode():
            token = int(model.generate(**inputs, max_new_tokens=1)[0, -1])
        if device.type == "cuda":
            torch.cuda.synchronize()
        return token, time.perf_counter() - start

    token, first_s = first_token()
    process_s = time.perf_counter() - began
    again_token, again_s = first_token()
    assert again_token == token, "the compiled call changed the answer"
    return dict(kernel=kernel, frames=frames, token=token, first_s=first_s, again_s=again_s, process_s=process_s)


def run_child(frames: int, kernel: str, tiny: bool, cache: Path, timeout_s: float) -> dict:
    env = child_environment(cache)
    cmd = [sys.executable, __file__, CHILD, str(frames), kernel] + (["--tiny"] if tiny else [])
    started = time.perf_counter()
    try:
        result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return dict(kernel=kernel, frames=frames, error=f"stopped after {timeout_s:.0f} s")
    if result.returncode != 0:
        return dict(kernel=kernel, frames=frames, error=result.stderr[-1500:])
    entry = json.loads(result.stdout.strip().splitlines()[-1])
    return entry | dict(child_wall_s=time.perf_counter() - started)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        print(json.dumps(child(int(sys.argv[2]), sys.argv[3], "--tiny" in sys.argv)), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true", help="the tiny shape on the CPU: checks the script")
    parser.add_argument("--frames", type=int, default=None, help="video length (default 1024; tiny: 8)")
    parser.add_argument("--kernels", nargs="+", default=["reference", "auto"], help="ttt_kernel values")
    parser.add_argument("--child-timeout-s", type=float, default=3600, help="stop a child after this long")
    args = parser.parse_args()
    frames = args.frames or (8 if args.tiny else 1024)
    results = dict(frames=frames, tiny=args.tiny, runs=[])
    with tempfile.TemporaryDirectory() as tmp:
        for kernel in args.kernels:
            cache = Path(tmp) / kernel  # each setting's own caches: "auto" must not find what another compiled
            for state in ("cold", "warm"):
                entry = dict(cache=state) | run_child(frames, kernel, args.tiny, cache, args.child_timeout_s)
                print(json.dumps(entry), flush=True)
                results["runs"].append(entry)
                atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
