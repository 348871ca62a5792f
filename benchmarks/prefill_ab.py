"""Which memory change costs prefill time? The user's prefill (bench_e2e.py's model and prompt: random 2B-shape
weights, bf16, host pixels) timed under variants of the session-6 peak-memory settings, in one process.

    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --out prefill_ab.json [--frames 1024]   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --tiny --out prefill_ab.json           # CPU check

Variants (each: one untimed generate(1) for its compilations, then --repeats timed ones and the vision tower):
  now           VISION_PATCHES 8192, MLP_PIECE 4096, q/k rows bf16 (the library as it is)
  vision64      + vision tower calls of 64 temporal groups (42,240 patches at 352x480, the earlier setting)
  vision64_mlp  + MLP pieces of 16,384 tokens (the earlier setting)
  all_before    + q/k rows fp32 (the earlier rows)
The settings are module constants, set here between variants: a diagnostic of this script, not an API.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import bench_e2e
import spatial_ttt.layers.ttt as ttt
import spatial_ttt.models.modeling as modeling

VARIANTS = ("now", "vision64", "vision64_mlp", "all_before")
ROW_DTYPE = ttt.row_dtype


def apply(variant: str, shape: bench_e2e.Shape) -> None:
    h, w = shape.patch_grid
    index = VARIANTS.index(variant)
    modeling.VISION_PATCHES = 64 * h * w if index >= 1 else 8192
    modeling.MLP_PIECE = 16384 if index >= 2 else 4096
    ttt.row_dtype = (lambda precision: torch.float32) if index >= 3 else ROW_DTYPE



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    shape = bench_e2e.shape_tiny() if args.tiny else bench_e2e.shape_2b()
    frames = args.frames or (8 if args.tiny else 1024)
    inputs = bench_e2e.place(bench_e2e.prompt(shape, frames // 2), device, "host")
    model = bench_e2e.build_ours(shape, device, "bf16")
    clock = bench_e2e.Clock(device)
    _, warmup_s, _ = clock.run(lambda: bench_e2e.generate(model, inputs, 2))
    result = dict(frames=frames, tokens=int(inputs["input_ids"].shape[1]), warmup_s=warmup_s,
                  environment=bench_e2e.environment(device), variants={})
    for variant in VARIANTS:
        apply(variant, shape)
        clock.run(lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1)))
        runs = [clock.run(lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1))) for _ in range(args.repeats)]
        (tokens, _), *_ = runs[0]
        _, vision_s, _ = clock.run(lambda: bench_e2e.vision_tower(model, inputs, True))
        result["variants"][variant] = dict(
            prefill_s=[r[1] for r in runs], prefill_s_median=statistics.median(r[1] for r in runs),
            peak_gib=max(r[2] for r in runs) / bench_e2e.GIB, vision_s=vision_s, token=int(tokens[0, -1]))
        print(variant, result["variants"][variant], flush=True)
        bench_e2e.write_json(args.out, result)
    apply("now", shape)


if __name__ == "__main__":
    main()
