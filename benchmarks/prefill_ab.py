"""Which settings cost or buy prefill time? The user's prefill (bench_e2e.py's model and prompt: random 2B-shape
weights, bf16, host pixels) timed under variants, in one process.

    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --out prefill_ab.json [--frames 1024]   # one GPU
    PYTHONPATH=src:benchmarks python benchmarks/prefill_ab.py --tiny --out prefill_ab.json           # CPU check

Variants (each: one untimed generate(1) for its compilations, then --repeats timed ones and the vision tower):
  now           the library as it is
  eager_text    the decoder's norms, MLP activations, q/k norms and rope run eagerly (before session 7)
  eager_all     + the vision tower's blocks eagerly and its patch embedding as the Conv3d (before session 7)
  rows_fp32     + q/k rows fp32 (before session 6)
Session 7's first run of this script (results/session7_h100/prefill_ab.json) compared session 6's memory settings
(vision calls of 8,192 patches, MLP pieces of 16,384 tokens, q/k rows fp32) instead. The variants swap functions
and module classes of the library, and are undone at the end: a diagnostic of this script, not an API.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchEmbed

import bench_e2e
import spatial_ttt.layers.attention as attention
import spatial_ttt.layers.ttt as ttt
import spatial_ttt.layers.vision_attention as vision
import spatial_ttt.models.modeling as modeling
from spatial_ttt.ops.fast_weight_kernels import fused_or_plain

VARIANTS = ("now", "eager_text", "eager_all", "rows_fp32")
TEXT_STAGES = {attention.project_heads, attention.rope_heads, modeling.call, modeling.norm_mlp}
ROWS = ttt.row_dtype


def apply(variant: str, model) -> None:
    index = VARIANTS.index(variant)
    eager = TEXT_STAGES | ({vision.frame_block} if index >= 2 else set())

    def choose(kernel, fn, t):
        return fn if fn in eager else fused_or_plain(kernel, fn, t)

    for module in (attention, vision, modeling):
        module.fused_or_plain = choose
    embed = model.model.visual.patch_embed
    embed.__class__ = Qwen3VLVisionPatchEmbed if index >= 2 else vision.LinearPatchEmbed
    ttt.row_dtype = (lambda precision: torch.float32) if index >= 3 else ROWS


def restore(model) -> None:
    for module in (attention, vision, modeling):
        module.fused_or_plain = fused_or_plain
    model.model.visual.patch_embed.__class__ = vision.LinearPatchEmbed
    ttt.row_dtype = ROWS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
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
    for variant in args.variants:
        apply(variant, model)
        clock.run(lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1)))
        runs = [clock.run(lambda: bench_e2e.generate(model, inputs, 1, model.new_state(1))) for _ in range(args.repeats)]
        (tokens, _), *_ = runs[0]
        _, vision_s, _ = clock.run(lambda: bench_e2e.vision_tower(model, inputs, True))
        result["variants"][variant] = dict(
            prefill_s=[r[1] for r in runs], prefill_s_median=statistics.median(r[1] for r in runs),
            peak_gib=max(r[2] for r in runs) / bench_e2e.GIB, vision_s=vision_s, token=int(tokens[0, -1]))
        print(variant, result["variants"][variant], flush=True)
        bench_e2e.write_json(args.out, result)
    restore(model)


if __name__ == "__main__":
    main()
