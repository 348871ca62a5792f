"""The fast-weight operator alone on the GPU: every kernel x precision against the fp32 reference, and its speed.

    PYTHONPATH=src python benchmarks/bench_fast_weight.py --out fast_weight.json

Released shapes: 4 heads x batch (BH = 4 * batch), d = dh = 512, chunk 2648, momentum on, Muon off (the released
evaluation) unless --muon; rates ~ softplus around the base lr 0.001. One prefill of --chunks chunks through
FastWeightMemory.advance (the path the model runs), timed per kernel ("reference", "compiled", "graphed") and
precision ("fp32": fp32 products, TF32 off; "bf16": bf16 operands, fp32 accumulation). Error: relative L2 of the
outputs and final W1 against the reference kernel in fp32. TFLOP/s counts the matrix products (scan_flops).
Decode: one token through advance(decoding=True), per TTT layer.
--profile: one more prefill per kernel and precision under torch.profiler: the GPU's busy and idle time inside it
(idle: the GPU waits for the host) and the kernels taking the most time (``profile`` in each run).
"""

from __future__ import annotations

import argparse
import math

import torch
import torch.nn.functional as F

from common import cuda_time, environment, matmul_peak, median, write_json
from gpu_idle import activities, gaps, merge

from spatial_ttt.ops import FastWeightKernel, FastWeightMemory, FastWeights, TokenStream
from spatial_ttt.ops.fast_weight import scan_flops


def inputs(n: int, bh: int, d: int = 512, seed: int = 0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device="cuda")
    w = [r(bh, d, d) / math.sqrt(d) for _ in range(3)]
    q, k = (F.normalize(F.silu(r(bh, n, d)), dim=-1) for _ in range(2))
    v = F.silu(r(bh, n, d))
    offset = math.log(math.expm1(1e-3))
    lrs = [F.softplus(0.5 * r(bh, n, 1) + offset) for _ in range(3)]
    return FastWeights.start(*w), q, TokenStream(k, v, *lrs, torch.sigmoid(r(bh, n, 1)))


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


def profile(prefill, top: int = 8) -> dict:
    """GPU busy / idle milliseconds inside one call of ``prefill`` and its top kernels by total time."""
    with torch.profiler.profile(activities=activities(torch.cuda.is_available())) as prof:
        with torch.profiler.record_function("stage: prefill"):
            prefill()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    events = prof.events()
    span = next((e.time_range.start, e.time_range.end) for e in events if e.name == "stage: prefill")
    # the device timeline also carries the range itself as an annotation: kernels and copies only
    device = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU and not e.name.startswith("stage: ")]
    busy = merge((e.time_range.start, e.time_range.end) for e in device)
    end = max(b for _, b in busy) if busy else span[1]  # the GPU finishes after the host leaves the range
    idle = sum(b - a for a, b in gaps(busy, (span[0], end)))
    totals: dict[str, list[float]] = {}
    for e in device:
        totals.setdefault(e.name[:80], []).append(e.time_range.end - e.time_range.start)
    kernels = sorted(((sum(t) / 1e3, len(t), name) for name, t in totals.items()), reverse=True)[:top]
    return {"span_ms": (end - span[0]) / 1e3, "gpu_idle_ms": idle / 1e3, "kernels_ms_count_name": kernels}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--chunks", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=2648)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--muon", action="store_true")
    parser.add_argument("--kernels", nargs="+", default=["reference", "compiled", "graphed"])
    parser.add_argument("--profile", action="store_true", help="also profile one prefill per kernel and precision")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    env, peak = environment(), matmul_peak()
    bh, n, C = 4 * args.batch, args.chunks * args.chunk, args.chunk
    weights, q, tokens = inputs(n, bh)
    flops = scan_flops(bh, n, 512, 512, C, args.muon)["total"]
    results = {"env": env, "bf16_matmul_peak_tflops": peak, "bh": bh, "tokens": n, "chunk": C, "muon": args.muon,
               "flops": flops, "runs": []}
    print(env, f"peak {peak:.0f} TFLOP/s", flush=True)
    expected = None
    for precision in ("fp32", "bf16"):
        for kind in args.kernels:
            kernel = FastWeightKernel.standalone(C, args.muon, precision, kind)

            def prefill():
                memory = FastWeightMemory(weights)
                with torch.inference_mode():
                    return memory.advance(q, tokens, kernel), memory

            out, memory = prefill()  # warm-up: compile, capture
            if expected is None:
                expected = (out, memory.weights.w1)
            seconds = median(cuda_time(prefill, warmup=1, repeat=3))
            step = FastWeightMemory(memory.weights, memory.recent, memory.pending)
            step.begin_decode()

            def decode_token():
                with torch.inference_mode():
                    step.advance(q[:, :1], tokens.slice(0, 1), kernel, decoding=True)

            decode_ms = 1e3 * median(cuda_time(decode_token, warmup=3, repeat=20))
            run = {"kernel": kind, "precision": precision, "seconds": seconds, "tflops_per_s": flops / seconds / 1e12,
                   "rel_err_out": rel(out, expected[0]), "rel_err_w1": rel(memory.weights.w1, expected[1]),
                   "decode_ms_per_token_per_layer": decode_ms}
            if args.profile:
                run["profile"] = profile(prefill)
            print(run, flush=True)
            results["runs"].append(run)
            write_json(args.out, results)


if __name__ == "__main__":
    main()
