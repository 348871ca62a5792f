"""Where the time goes: torch.profiler tables for the fast-weight step and for one Spatial-TTT prefill, plus
micro-benchmarks of the operator's products alone (the floor of this design).

    PYTHONPATH=src python benchmarks/profile_gpu.py --frames 512
"""

from __future__ import annotations

import argparse
import os
import types

import torch
from torch.profiler import ProfilerActivity, profile

from common import environment, matmul_peak

import bench_fast_weight as bfw
import bench_prefill as bp


def event_time(fn, repeat=20):
    for _ in range(3):
        fn()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    for _ in range(repeat):
        fn()
    e.record()
    e.synchronize()
    return s.elapsed_time(e) / repeat  # ms


def micro(peak):
    bf = torch.bfloat16
    r = lambda *s: torch.randn(*s, device="cuda", dtype=bf)
    C, d = 2648, 512
    x, w = r(4, 2 * C, d), r(4, 2 * d, d)
    k, a = r(4, C, d), r(4, C, d)
    ns = r(12, d, d)
    cases = {
        "gh=[q;k]@[W0;W2]^T": (lambda: x @ w.transpose(-1, -2), 2 * 4 * 2 * C * d * 2 * d),
        "dW=a^T@k (K=C)": (lambda: a.transpose(-1, -2) @ k, 2 * 4 * C * d * d),
        "NS product [12,512,512]": (lambda: ns @ ns, 2 * 12 * d**3),
        "NS product [12,512,512] x^T": (lambda: ns @ ns.transpose(-1, -2), 2 * 12 * d**3),
    }
    out = {}
    for name, (fn, flops) in cases.items():
        ms = event_time(fn)
        out[name] = {"ms": ms, "tflops": flops / ms / 1e9, "pct": 100 * flops / ms / 1e9 / peak}
        print(f"{name:32s} {ms*1e3:8.1f} us {flops/ms/1e9:7.1f} TFLOP/s", flush=True)
    return out


def table(prof, n=25):
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=n, max_name_column_width=70)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--out", default=".")
    args = p.parse_args()
    print(environment())
    peak = matmul_peak()
    micro(peak)
    # operator, compiled without graphs so kernels are visible
    os.environ["SPATIAL_TTT_CUDAGRAPHS"] = "0"
    n = 8 * 2648 + 1
    leaves, lrs, mom = bfw.inputs(n)
    fn = lambda: bfw.fast_weight_scan_gpu(*bfw.build(leaves, lrs, mom), 0, 2648, True)
    with torch.no_grad():
        fn(); fn(); torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn(); torch.cuda.synchronize()
    t = table(prof, 30)
    print(t)
    open(os.path.join(args.out, "profile_operator.txt"), "w").write(t)
    os.environ.pop("SPATIAL_TTT_CUDAGRAPHS")
    # model prefill
    torch._dynamo.config.cache_size_limit = 64
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = bp.SpatialTTTForConditionalGeneration(bp.config()).eval()
    torch.set_default_dtype(torch.float32)
    model.embed = types.MethodType(bp.fake_embed, model)
    ids = bp.video_ids(args.frames // 2).cuda()
    grid = torch.tensor([[args.frames // 2, bp.H_PATCH, bp.W_PATCH]], device="cuda")
    dummy = torch.zeros(1, 1, device="cuda")
    run = lambda: model(input_ids=ids, pixel_values_videos=dummy, video_grid_thw=grid, logits_to_keep=1)
    with torch.inference_mode():
        run(); torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            run(); torch.cuda.synchronize()
    t = table(prof, 45)
    print(t)
    open(os.path.join(args.out, "profile_prefill.txt"), "w").write(t)


if __name__ == "__main__":
    main()
