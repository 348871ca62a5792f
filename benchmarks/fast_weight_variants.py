"""Formulations of the fast-weight chunk step side by side on the GPU (a component benchmark under
bench_fast_weight.py): which way of writing the same math the graphed kernel should compile.

    PYTHONPATH=src:benchmarks python benchmarks/fast_weight_variants.py --out variants.json

One chunk step (answer a full chunk of queries, then update on it; momentum on, Muon off as in the released
evaluation) at the released shape (4 heads, d = dh = 512, chunk 2648), each variant compiled and captured in a CUDA
graph the way the library's graphed kernel does (:class:`ChunkGraph`), replayed --repeats times:

* ``separate``: the products as the reference writes them, one per weight (9 per chunk);
* ``concat``: W0 and W2 in one product wherever they meet the same rows (k or q against [W0; W2]), and dW0, dW2 as
  one product against k (6 products per chunk, the same FLOPs);
* ``stacked``: the three weight-gradient products (M = N = 512, K = C: 64 output tiles of 128 x 128 at 4 heads,
  half the GPU's SMs idle) as one batched product of 3 x BH matrices;
* ``stacked_splitk``: the same with K cut in two halves (6 x BH products), their halves summed in fp32;
* ``library``: whatever ``spatial_ttt.ops.fast_weight`` does now;
* ``*_autotune``: the same compiled with inductor's max-autotune (Triton GEMM templates, epilogues fused);
* ``gemms_separate`` / ``gemms_concat`` / ``gemms_stacked``: only the products in bf16 (no elementwise work): the floor cuBLAS sets.

Error: relative L2 of the answers and the updated W0 against the fp32 reference (double). TFLOP/s counts the
products (9 of 2 C d dh per head).
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from common import environment, median, write_json

from spatial_ttt.ops.fast_weight import FastWeights, chunk_step, matmul, TokenStream
from spatial_ttt.ops.fast_weight_kernels import ChunkGraph


def renorm(w, step, norm):
    w = w + step
    return w / (w.norm(dim=-1, keepdim=True) + 1e-5) * norm


def _update_tail(w0, w1, w2, n0, n1, n2, m0, m1, m2, dw0, dw1, dw2, mom):
    beta = mom.mean(dim=1, keepdim=True)
    s0, s1, s2 = dw0 + beta * m0, dw1 + beta * m1, dw2 + beta * m2
    return renorm(w0, s0, n0), renorm(w1, s1, n1), renorm(w2, s2, n2), s0, s1, s2


def _rows(w0, w1, w2, q, k, v, precision):
    """The answers and what the weight gradients are built from, as the reference writes them."""
    out = matmul(F.silu(matmul(q, w0.transpose(-1, -2), precision)) * matmul(q, w2.transpose(-1, -2), precision),
                 w1.transpose(-1, -2), precision)
    gate = matmul(k, w0.transpose(-1, -2), precision)
    hidden = matmul(k, w2.transpose(-1, -2), precision)
    sig = torch.sigmoid(gate)
    d_hidden = matmul(v, w1, precision)
    return out, gate * sig, hidden, d_hidden, sig * (1 + gate * (1 - sig))  # silu(g), h, dh, silu'(g)


def step_separate(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    out, silu_gate, hidden, d_hidden, d_silu = _rows(w0, w1, w2, q, k, v, precision)
    dw1 = matmul((v * lr1).transpose(-1, -2), silu_gate * hidden, precision)
    dw2 = matmul((d_hidden * silu_gate * lr2).transpose(-1, -2), k, precision)
    dw0 = matmul((d_hidden * hidden * d_silu * lr0).transpose(-1, -2), k, precision)
    return (out, *_update_tail(w0, w1, w2, n0, n1, n2, m0, m1, m2, dw0, dw1, dw2, mom))


def step_concat(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    dh = w0.shape[-2]
    w02 = torch.cat([w0, w2], dim=-2).transpose(-1, -2)  # [BH, d, 2 dh]
    gate_q, hidden_q = matmul(q, w02, precision).split(dh, dim=-1)
    out = matmul(F.silu(gate_q) * hidden_q, w1.transpose(-1, -2), precision)
    gate, hidden = matmul(k, w02, precision).split(dh, dim=-1)
    sig = torch.sigmoid(gate)
    silu_gate = gate * sig
    d_hidden = matmul(v, w1, precision)
    d_silu = sig * (1 + gate * (1 - sig))
    dw1 = matmul((v * lr1).transpose(-1, -2), silu_gate * hidden, precision)
    rows = torch.cat([d_hidden * hidden * d_silu * lr0, d_hidden * silu_gate * lr2], dim=-1)  # [BH, C, 2 dh]
    dw0, dw2 = matmul(rows.transpose(-1, -2), k, precision).split(dh, dim=-2)
    return (out, *_update_tail(w0, w1, w2, n0, n1, n2, m0, m1, m2, dw0, dw1, dw2, mom))


def _stacked_rows(w0, w1, w2, q, k, v, lr0, lr1, lr2, precision):
    """The answers, and the weight-gradient products' operands stacked: left [3, BH, C, 512], right the same."""
    out, silu_gate, hidden, d_hidden, d_silu = _rows(w0, w1, w2, q, k, v, precision)
    left = torch.stack([d_hidden * hidden * d_silu * lr0, v * lr1, d_hidden * silu_gate * lr2])
    right = torch.stack([k.to(silu_gate.dtype), silu_gate * hidden, k.to(silu_gate.dtype)])
    return out, left, right


def step_stacked(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    out, left, right = _stacked_rows(w0, w1, w2, q, k, v, lr0, lr1, lr2, precision)
    dw0, dw1, dw2 = matmul(left.transpose(-1, -2), right, precision).unbind(0)
    return (out, *_update_tail(w0, w1, w2, n0, n1, n2, m0, m1, m2, dw0, dw1, dw2, mom))


def step_stacked_splitk(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    out, left, right = _stacked_rows(w0, w1, w2, q, k, v, lr0, lr1, lr2, precision)
    halves = lambda t: torch.stack(t.chunk(2, dim=-2))  # [2, 3, BH, C/2, 512]
    dw0, dw1, dw2 = matmul(halves(left).transpose(-1, -2), halves(right), precision).sum(0).unbind(0)
    return (out, *_update_tail(w0, w1, w2, n0, n1, n2, m0, m1, m2, dw0, dw1, dw2, mom))


def step_library(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    weights = FastWeights(w0, w1, w2, (n0, n1, n2), (m0, m1, m2))
    out, new = chunk_step(weights, q, TokenStream(k, v, lr0, lr1, lr2, mom), False, precision)
    return (out, new.w0, new.w1, new.w2, *new.momentum)


def gemms_separate(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    b = lambda t: t.bfloat16()
    w0, w1, w2, q, k, v = map(b, (w0, w1, w2, q, k, v))
    h = q @ w0.mT, q @ w2.mT, k @ w0.mT, k @ w2.mT, v @ w1
    return (h[0] @ w1.mT, h[2].mT @ h[3], h[4].mT @ k, h[4].mT @ k, *h)


def gemms_concat(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    b = lambda t: t.bfloat16()
    w0, w1, w2, q, k, v = map(b, (w0, w1, w2, q, k, v))
    w02 = torch.cat([w0, w2], dim=-2).mT
    hq, hk, dv = q @ w02, k @ w02, v @ w1
    half = w0.shape[-2]
    return (hq[..., :half] @ w1.mT, dv.mT @ hk[..., half:], hk.mT @ k, hq, hk)


def gemms_stacked(w0, w1, w2, n0, n1, n2, m0, m1, m2, q, k, v, lr0, lr1, lr2, mom, precision):
    b = lambda t: t.bfloat16()
    w0, w1, w2, q, k, v = map(b, (w0, w1, w2, q, k, v))
    h = q @ w0.mT, q @ w2.mT, k @ w0.mT, k @ w2.mT, v @ w1
    left, right = torch.stack([h[2], h[3], h[4]]), torch.stack([k, h[3], k])
    return (h[0] @ w1.mT, left.mT @ right, *h)


VARIANTS = {"separate": step_separate, "concat": step_concat, "stacked": step_stacked,
            "stacked_splitk": step_stacked_splitk, "library": step_library,
            "gemms_separate": gemms_separate, "gemms_concat": gemms_concat, "gemms_stacked": gemms_stacked}


def inputs(bh: int, c: int, d: int, device: str, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator(device=device).manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, device=device)
    w = [r(bh, d, d) / math.sqrt(d) for _ in range(3)]
    norms = [x.norm(dim=-1, keepdim=True) for x in w]
    momentum = [1e-3 * r(bh, d, d) for _ in range(3)]
    q, k = (F.normalize(F.silu(r(bh, c, d)), dim=-1) for _ in range(2))
    v = F.silu(r(bh, c, d))
    offset = math.log(math.expm1(1e-3))
    lrs = [F.softplus(0.5 * r(bh, c, 1) + offset) for _ in range(3)]
    return [*w, *norms, *momentum, q, k, v, *lrs, torch.sigmoid(r(bh, c, 1))]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--chunk", type=int, default=2648)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--autotune", action="store_true", help="also each variant under max-autotune")
    parser.add_argument("--tiny", action="store_true", help="CPU, small shapes, uncompiled: checks the script")
    args = parser.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    bh, c, d = 4 * args.batch, args.chunk, 512
    device = "cuda"
    if args.tiny:
        c, d, device, args.repeats = 48, 32, "cpu", 2
    example = inputs(bh, c, d, device)
    flops = 9 * 2 * c * d * d * bh
    with torch.no_grad():
        expected = step_separate(*[t.double() for t in example], "fp32")
    results = {"env": {"device": "cpu"} if args.tiny else environment(), "bh": bh, "chunk": c, "flops_per_step": flops, "runs": []}
    modes = [None, "max-autotune-no-cudagraphs"] if args.autotune else [None]
    for precision in args.precisions:
        for name in args.variants:
            for mode in modes:
                fn = VARIANTS[name]
                if not args.tiny:
                    torch._dynamo.reset()  # each variant compiles on its own
                    fn = torch.compile(fn, fullgraph=True, mode=mode, dynamic=False)
                graph = ChunkGraph(lambda *t, fn=fn: fn(*t, precision), example, capture=not args.tiny)
                replay = graph.graph.replay if graph.graph is not None else lambda: graph(*example)
                times = []
                for _ in range(5):
                    start = time.perf_counter()
                    for _ in range(args.repeats):
                        replay()
                    if device == "cuda":
                        torch.cuda.synchronize()
                    times.append((time.perf_counter() - start) * 1e3 / args.repeats)
                ms = median(times)
                run = {"variant": name + ("_autotune" if mode else ""), "precision": precision, "ms_per_step": ms,
                       "tflops_per_s": flops / ms / 1e9}
                if not name.startswith("gemms"):
                    out = graph.outputs if graph.graph is not None else graph(*example)
                    run["rel_err_out"], run["rel_err_w0"] = rel(out[0], expected[0]), rel(out[1], expected[1])
                print(run, flush=True)
                results["runs"].append(run)
                write_json(args.out, results)


if __name__ == "__main__":
    main()
