"""Which memory change costs prefill time? The user's prefill (bench_e2e.py's model and prompt: random 2B-shape
weights, bf16, host pixels) timed under variants of the session-6 peak-memory settings, in one process.

    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --out prefill_ab.json [--frames 1024]   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --tiny --out prefill_ab.json           # CPU check

Variants (each: one untimed generate(1) for its compilations, then --repeats timed ones and the vision tower):
  vision8k      vision tower calls of 8,192 patches (what session 6's H100 run measured), else as the library
  now           the library as it is: vision calls of 42,240 patches (64 groups of 352x480), MLP pieces of 4,096
                tokens, q/k rows bf16
  mlp16k        + MLP pieces of 16,384 tokens (the earlier setting)
  all_before    + q/k rows fp32 (the earlier rows)
The vision call and MLP piece sizes are the model's config fields (vision_patches, mlp_piece), set on the model
between variants; the q/k row dtype is a library rule (ops.fast_weight.row_dtype), swapped here for the last
variant and restored at the end: a diagnostic of this script, not an API.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import bench_e2e
import spatial_ttt.layers.ttt as ttt
from spatial_ttt.configuration import SpatialTTTConfig

VARIANTS = ("vision8k", "now", "mlp16k", "all_before")
LIBRARY_ROWS = ttt.row_dtype


def apply(model, variant: str) -> None:
    index = VARIANTS.index(variant)
    model.config.vision_patches = 8192 if variant == "vision8k" else SpatialTTTConfig.vision_patches
    model.config.mlp_piece = 16384 if index >= 2 else SpatialTTTConfig.mlp_piece
    ttt.row_dtype = (lambda precision: torch.float32) if index >= 3 else LIBRARY_ROWS


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
        apply(model, variant)
        clock.run(lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1)))
        runs = [clock.run(lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1))) for _ in range(args.repeats)]
        (tokens, _), *_ = runs[0]
        _, vision_s, _ = clock.run(lambda: bench_e2e.vision_tower(model, inputs, True))
        result["variants"][variant] = dict(
            prefill_s=[r[1] for r in runs], prefill_s_median=statistics.median(r[1] for r in runs),
            peak_gib=max(r[2] for r in runs) / bench_e2e.GIB, vision_s=vision_s, token=int(tokens[0, -1]))
        print(variant, result["variants"][variant], flush=True)
        bench_e2e.write_json(args.out, result)
    apply(model, "now")


if __name__ == "__main__":
    main()
