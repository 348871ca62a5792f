"""The fast-weight operator alone on the GPU: correctness against the reference and speed against its FLOPs.

    PYTHONPATH=src python benchmarks/bench_fast_weight.py --out fast_weight.json

Realistic shapes: 4 heads (batch 1), d = dh = 512, chunk 2648, Muon and momentum on, rates ~ softplus around
the base lr 0.001. Correctness: the GPU path (bf16 products, fp32 weights) against the reference operator in fp32
(TF32 off) on the same GPU over a 100k+ token sequence, and the fp32 GPU reference against the CPU reference over
3 chunks. Yardstick: how far the reference itself moves when only its q/k/v are rounded to bf16.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch
import torch.nn.functional as F

from common import cuda_time, environment, matmul_peak, median, write_json

from spatial_ttt.ops import fast_weight as reference
from spatial_ttt.ops.fast_weight import FastWeights, TokenStream
from spatial_ttt.ops.fast_weight_gpu import fast_weight_scan_gpu, scan_flops


def inputs(n: int, heads: int = 4, d: int = 512, seed: int = 0, device="cuda", grad=False):
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device)
    w = [r(heads, d, d) / math.sqrt(d) for _ in range(3)]
    q, k = (F.normalize(F.silu(r(heads, n, d)), dim=-1) for _ in range(2))
    v = F.silu(r(heads, n, d))
    offset = math.log(math.expm1(1e-3))
    lrs = [F.softplus(0.5 * r(heads, n, 1) + offset) for _ in range(3)]
    mom = torch.sigmoid(r(heads, n, 1))
    leaves = [*w, q, k, v]
    if grad:
        for t in leaves:
            t.requires_grad_(True)
    return leaves, lrs, mom


def build(leaves, lrs, mom):
    w0, w1, w2, q, k, v = leaves
    return FastWeights.start(w0, w1, w2), q, TokenStream(k, v, *lrs, mom)


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--chunks", type=int, default=40, help="chunks in the long correctness sequence")
    parser.add_argument("--time-chunks", type=int, default=32)
    parser.add_argument("--bwd-chunks", type=int, default=8)
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    C, d, heads = 2648, 512, 4
    result = {"env": environment(), "shape": {"heads": heads, "d": d, "chunk": C}}
    peak = matmul_peak()
    result["bf16_matmul_peak_tflops"] = peak
    print(result["env"], f"peak {peak:.0f} TFLOP/s", flush=True)

    # ---- correctness over a long sequence -------------------------------------------------------------
    n = args.chunks * C + 17
    leaves, lrs, mom = inputs(n)
    checks = {"tokens": n}
    with torch.no_grad():
        for muon in (True, False):
            weights, q, tokens = build(leaves, lrs, mom)
            ref_out, ref_w, _ = reference.fast_weight_scan(weights, q, tokens, 0, C, muon)
            out, w, _ = fast_weight_scan_gpu(weights, q, tokens, 0, C, muon)
            rb = lambda t: t.bfloat16().float()
            r_out, r_w, _ = reference.fast_weight_scan(
                weights, rb(q), TokenStream(rb(tokens.k), rb(tokens.v), *tokens[2:]), 0, C, muon
            )
            per_chunk = [rel(out[:, i * C : (i + 1) * C], ref_out[:, i * C : (i + 1) * C]) for i in range(0, args.chunks, 8)]
            checks[f"muon={muon}"] = {
                "out_rel_err": rel(out, ref_out),
                "weights_rel_err": max(rel(a, b) for a, b in zip(w[:3], ref_w[:3])),
                "out_rel_err_first_chunk": rel(out[:, :C], ref_out[:, :C]),
                "out_rel_err_every_8th_chunk": per_chunk,
                "reference_bf16_input_sensitivity": rel(r_out, ref_out),
                "nan": bool(torch.isnan(out).any()),
            }
            print(f"muon={muon}", checks[f"muon={muon}"], flush=True)
        # GPU fp32 reference == CPU reference (3 chunks)
        m = 3 * C + 5
        short = build([t[:, :m] if t.dim() == 3 and t.shape[1] == n else t for t in leaves], [t[:, :m] for t in lrs], mom[:, :m])
        gpu_ref, _, _ = reference.fast_weight_scan(*short, 0, C, True)
        to_cpu = lambda t: None if t is None else t.cpu()
        w_cpu = FastWeights(*(to_cpu(t) for t in short[0][:3]), tuple(t.cpu() for t in short[0].norms), None)
        cpu_ref, _, _ = reference.fast_weight_scan(w_cpu, short[1].cpu(), TokenStream(*(to_cpu(t) for t in short[2])), 0, C, True)
        ours, _, _ = fast_weight_scan_gpu(*short, 0, C, True)
        checks["cpu_reference_3_chunks"] = {"gpu_fp32_ref_vs_cpu_ref": rel(gpu_ref.cpu(), cpu_ref), "gpu_path_vs_cpu_ref": rel(ours.cpu(), cpu_ref)}
        print(checks["cpu_reference_3_chunks"], flush=True)
    result["correctness"] = checks
    del leaves, lrs, mom

    # ---- forward speed ---------------------------------------------------------------------------------
    n = args.time_chunks * C + 1  # every chunk but the last updates
    leaves, lrs, mom = inputs(n, seed=1)
    flops = scan_flops(heads, n, d, d, C, True)
    timing = {"tokens": n, "flops": flops}
    variants = {
        "reference_fp32": lambda: reference.fast_weight_scan(*build(leaves, lrs, mom), 0, C, True),
        "reference_tf32": None,
        "gpu_eager_bf16": lambda: fast_weight_scan_gpu(*build(leaves, lrs, mom), 0, C, True, compile=False),
        "gpu_compiled_bf16": None,  # compiled step, no CUDA graphs
        "gpu_compiled_chunk_graph": lambda: fast_weight_scan_gpu(*build(leaves, lrs, mom), 0, C, True),
    }
    import os
    with torch.no_grad():
        for name, fn in variants.items():
            if name == "reference_tf32":
                torch.backends.cuda.matmul.allow_tf32 = True
                fn = variants["reference_fp32"]
            if name == "gpu_compiled_bf16":
                os.environ["SPATIAL_TTT_CUDAGRAPHS"] = "0"
                fn = lambda: fast_weight_scan_gpu(*build(leaves, lrs, mom), 0, C, True)
            times = cuda_time(fn, warmup=2, repeat=5)
            torch.backends.cuda.matmul.allow_tf32 = False
            os.environ.pop("SPATIAL_TTT_CUDAGRAPHS", None)
            t = median(times)
            timing[name] = {"seconds": t, "tflops": flops["total"] / t / 1e12, "pct_of_peak": 100 * flops["total"] / t / 1e12 / peak,
                            "ms_per_chunk": 1e3 * t / args.time_chunks}
            print(name, timing[name], flush=True)
    # one chunk's products alone through cuBLAS (the floor this design can reach)
    result["forward"] = timing

    # ---- forward + backward (training) ------------------------------------------------------------------
    n = args.bwd_chunks * C + 1
    leaves, lrs, mom = inputs(n, seed=2, grad=True)
    grad_out = torch.randn(heads, n, d, device="cuda")
    bwd = {"tokens": n}

    def step(fn):
        def run():
            for t in leaves:
                t.grad = None
            out, _, _ = fn(*build(leaves, lrs, mom), 0, C, True)
            (out * grad_out).sum().backward()
            return [t.grad.clone() for t in leaves]
        return run

    for name, fn in {"reference_fp32": reference.fast_weight_scan, "gpu_compiled_bf16": fast_weight_scan_gpu}.items():
        try:
            torch.cuda.reset_peak_memory_stats()
            times = cuda_time(step(fn), warmup=2, repeat=3)
            t = median(times)
            fwd_flops = scan_flops(heads, n, d, d, C, True)["total"]
            bwd[name] = {"seconds": t, "approx_tflops_3x_fwd": 3 * fwd_flops / t / 1e12, "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30}
            print(name, "fwd+bwd", bwd[name], flush=True)
        except Exception as error:  # report and go on
            bwd[name] = {"error": repr(error)[:500]}
            print(name, "fwd+bwd failed", error, flush=True)
    try:
        g_ref = step(reference.fast_weight_scan)()
        g_gpu = step(fast_weight_scan_gpu)()
        names = ["w0", "w1", "w2", "q", "k", "v"]
        bwd["grad_rel_err_vs_fp32_reference"] = {nm: rel(a, b) for nm, a, b in zip(names, g_gpu, g_ref)}
        print(bwd["grad_rel_err_vs_fp32_reference"], flush=True)
    except Exception as error:
        bwd["grad_error"] = repr(error)[:500]
    result["forward_backward"] = bwd

    # ---- the other GPU paths of the model: conv stencil and flex/flash attention vs their CPU-path formulas --
    from spatial_ttt.layers.attention import causal_window_mask
    from spatial_ttt.layers.spatial_conv import VideoSpan, make_conv
    from spatial_ttt.ops.attention_gpu import causal_attention
    from spatial_ttt.ops.spatial_conv_gpu import conv_video_tokens_gpu

    other = {}
    with torch.no_grad():
        conv = make_conv(2048).cuda().bfloat16()
        conv.weight.normal_()
        x = torch.randn(1, 10 + 16 * 165, 2048, device="cuda", dtype=torch.bfloat16)
        video = VideoSpan(0, torch.arange(10, 10 + 16 * 165, device="cuda"), (16, 11, 15))
        mine = conv_video_tokens_gpu(x, conv.weight, [video])
        vol = x[0, 10:].transpose(0, 1).reshape(1, 2048, 16, 11, 15).float()
        ref = conv.float()(vol).reshape(2048, -1).transpose(0, 1)
        other["conv_rel_err_vs_fp32_conv3d"] = rel(mine[0, 10:], ref)
        for name, (lq, lk, qs, ks, win) in {"swa_prefill": (6000, 6000, 0, 0, 2648), "swa_cached": (3000, 5648, 9000, 6352, 2648),
                                            "causal_prefill": (6000, 6000, 0, 0, None), "causal_cached": (3000, 12000, 9000, 0, None)}.items():
            q = torch.randn(1, 16, lq, 128, device="cuda", dtype=torch.bfloat16)
            k, v = (torch.randn(1, 8, lk, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
            out = causal_attention(q, k, v, qs, ks, win)
            mask = causal_window_mask(qs, lq, ks, lk, win, "cuda")
            ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True)
            other[f"attention_{name}_rel_err"] = rel(out, ref)
    print(other, flush=True)
    result["other_gpu_paths"] = other
    write_json(args.out, result)
    f = result["forward"]
    print("\nSUMMARY fast-weight operator (4 heads, d 512, chunk 2648, Muon+momentum)")
    print(f"peak bf16 matmul {peak:.0f} TFLOP/s")
    for name in variants:
        print(f"{name:20s} {f[name]['ms_per_chunk']:8.3f} ms/chunk {f[name]['tflops']:7.1f} TFLOP/s {f[name]['pct_of_peak']:5.1f}%")


if __name__ == "__main__":
    sys.exit(main())
