"""GPU path of the fast-weight operator: bf16 matrix products, fp32 fast weights, one compiled step per chunk.

Same contract as :func:`spatial_ttt.ops.fast_weight.fast_weight_scan` (the reference, which stays the source of
truth). Why this is a torch-level path and not a hand-written Triton kernel: at the released shapes (d = 512,
C = 2648, 4 heads) one chunk is ~25 GFLOP per head of large dense products (C x d x d for apply / descent and
d x d x d for Newton-Schulz), which cuBLAS runs near the matrix-unit peak; what the reference loses is
(1) fp32 products (no tensor cores at full rate), (2) ~60 small elementwise launches per chunk, and (3) separate
products where one would do. This module fixes those three:

* every product takes bf16 operands and accumulates in fp32 (cuBLAS); fast weights, momentum and the
  renormalisation stay fp32 (fp32_states, as the reference);
* the apply of a chunk's queries and the forward of its keys share one product: [q; k] @ [W0; W2]^T;
* the three Newton-Schulz iterations (W0, W1, W2 steps, all d x dh) run as one batched product of 3*BH matrices;
* ``torch.compile`` fuses the elementwise work (silu, silu', rate scaling, norms, renormalisation) around the
  products, for one chunk at a fixed shape, so the whole scan compiles once. Autograd runs through it
  (training), with a compiled backward.

On CPU or without a compiler the same step runs eagerly (tests compare it to the reference in fp32).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast_weight import NS_COEFFICIENTS, FastWeights, TokenStream


def _ns5_batched(g: Tensor) -> Tensor:
    """Newton-Schulz (quintic, the reference's coefficients) on a batch [n, m, k] in bf16, as the reference."""
    x = g.bfloat16()
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:
        x = x.transpose(-1, -2)
    x = x / (x.float().norm(dim=(-2, -1), keepdim=True) + 1e-7).bfloat16()
    for a, b, c in NS_COEFFICIENTS:
        gram = x @ x.transpose(-1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.transpose(-1, -2)
    return x


def _descent(w1b: Tensor, k: Tensor, v: Tensor, g: Tensor, h: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor):
    """Gradient steps of one chunk (see swiglu_descent), from the precomputed g = k W0^T, h = k W2^T (fp32)."""
    sig = torch.sigmoid(g)
    silu_g = g * sig
    d_hidden = (v @ w1b).float()  # [BH, C, dh]
    d_silu = sig * (1 + g * (1 - sig))
    bf = torch.bfloat16
    dw1 = (v * lr1).to(bf).transpose(-1, -2) @ (silu_g * h).to(bf)
    dw2 = (d_hidden * silu_g * lr2).to(bf).transpose(-1, -2) @ k
    dw0 = (d_hidden * h * d_silu * lr0).to(bf).transpose(-1, -2) @ k
    return dw0.float(), dw1.float(), dw2.float()


def _finish_update(w, steps, prev, norms, mom: Tensor | None, use_muon: bool):
    """Momentum, Muon and row renormalisation (fp32), as fast_weight_update."""
    new_prev = prev
    if mom is not None:
        beta = mom.mean(dim=1, keepdim=True)  # [BH, 1, 1]
        steps = tuple(s + beta * p for s, p in zip(steps, prev))
        new_prev = steps
    if use_muon:
        if steps[0].shape == steps[1].shape:  # inter_multi 1: one batched product for the three
            n = steps[0].shape[0]
            ortho = _ns5_batched(torch.cat(steps, dim=0)).float()
            steps = (ortho[:n], ortho[n : 2 * n], ortho[2 * n :])
        else:
            steps = tuple(_ns5_batched(s).float() for s in steps)
    out = []
    for wi, si, ni in zip(w, steps, norms):
        wi = wi + si
        out.append(wi / (wi.norm(dim=-1, keepdim=True) + 1e-5) * ni)
    return tuple(out), new_prev


def apply_update_step(w0, w1, w2, p0, p1, p2, n0, n1, n2, q, k, v, lr0, lr1, lr2, mom, use_muon: bool):
    """One full chunk: outputs f(q) with the current weights, then the updated weights and momentum.

    q, k, v bf16 [BH, C, d]; weights / momentum / norms fp32; rates fp32 [BH, C, 1]; mom fp32 or None.
    """
    bf = torch.bfloat16
    w02 = torch.cat([w0, w2], dim=1).to(bf)  # [BH, 2dh, d]
    w1b = w1.to(bf)
    gh = (torch.cat([q, k], dim=1) @ w02.transpose(-1, -2)).float()  # [BH, Cq + C, 2dh]
    dh = w0.shape[1]
    nq = q.shape[1]
    gq, hq = gh[:, :nq, :dh], gh[:, :nq, dh:]
    gk, hk = gh[:, nq:, :dh], gh[:, nq:, dh:]
    out = (F.silu(gq) * hq).to(bf) @ w1b.transpose(-1, -2)
    steps = _descent(w1b, k, v, gk, hk, lr0, lr1, lr2)
    (w0, w1, w2), (p0, p1, p2) = _finish_update((w0, w1, w2), steps, (p0, p1, p2), (n0, n1, n2), mom, use_muon)
    return out, w0, w1, w2, p0, p1, p2


def apply_step(w0, w1, w2, q):
    """f(q) alone (partial or last chunks), bf16 products."""
    bf = torch.bfloat16
    dh = w0.shape[1]
    gh = (q @ torch.cat([w0, w2], dim=1).to(bf).transpose(-1, -2)).float()
    return (F.silu(gh[..., :dh]) * gh[..., dh:]).to(bf) @ w1.to(bf).transpose(-1, -2)


def update_step(w0, w1, w2, p0, p1, p2, n0, n1, n2, k, v, lr0, lr1, lr2, mom, use_muon: bool):
    """The update alone (a chunk whose queries were answered in an earlier call)."""
    bf = torch.bfloat16
    dh = w0.shape[1]
    gh = (k @ torch.cat([w0, w2], dim=1).to(bf).transpose(-1, -2)).float()
    steps = _descent(w1.to(bf), k, v, gh[..., :dh], gh[..., dh:], lr0, lr1, lr2)
    (w0, w1, w2), (p0, p1, p2) = _finish_update((w0, w1, w2), steps, (p0, p1, p2), (n0, n1, n2), mom, use_muon)
    return w0, w1, w2, p0, p1, p2


_COMPILED: dict[tuple[str, str | None], object] = {}


def _compiled(name: str, fn, mode: str | None):
    """torch.compile'd version of a step (once per process and mode); eager when SPATIAL_TTT_NO_COMPILE=1."""
    if os.environ.get("SPATIAL_TTT_NO_COMPILE") == "1":
        return fn
    if (name, mode) not in _COMPILED:
        _COMPILED[name, mode] = torch.compile(fn, fullgraph=True, dynamic=False, mode=mode)
    return _COMPILED[name, mode]


def fast_weight_scan_gpu(
    weights: FastWeights,
    q: Tensor,
    tokens: TokenStream,
    num_pending: int,
    chunk_size: int,
    use_muon: bool,
    compile: bool | None = None,
) -> tuple[Tensor, FastWeights, int]:
    """Drop-in for the reference ``fast_weight_scan`` (same chunking and last-chunk rule); outputs fp32.

    ``compile`` None: compile on CUDA, eager elsewhere.
    """
    if compile is None:
        compile = q.is_cuda
    # One chunk is ~0.1-0.3 ms of GPU work at the released shapes, so launch overhead matters: without autograd
    # the compiled step is replayed as a CUDA graph ("reduce-overhead"); outputs are copied out of the graph's
    # buffers before the next replay. With autograd (training) the plain compiled step is used.
    training = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (q, *tokens, weights.w0, weights.w1, weights.w2)
    )
    graphs = compile and not training and q.is_cuda and os.environ.get("SPATIAL_TTT_CUDAGRAPHS", "1") == "1"
    mode = "reduce-overhead" if graphs else None
    use = (lambda name, fn: _compiled(name, fn, mode)) if compile else (lambda name, fn: fn)
    if graphs:
        def _fresh(fn):
            def call(*a):
                torch.compiler.cudagraph_mark_step_begin()
                res = fn(*a)
                return tuple(r.clone() for r in res) if isinstance(res, tuple) else res.clone()
            return call
    else:
        def _fresh(fn):
            return fn
    fused, apply_only, update_only = (
        _fresh(use("apply_update", apply_update_step)),
        apply_step,  # variable-length query runs (a call's last chunk): eager, so no compile per length
        _fresh(use("update", update_step)),
    )
    # contiguous chunk inputs: fixed strides, so the compiled step does not recompile per sequence length
    cc = (lambda t: None if t is None else t.contiguous()) if compile else (lambda t: t)
    bf = torch.bfloat16
    total = tokens.length
    qb = q.to(bf)
    kb, vb = tokens.k.to(bf), tokens.v.to(bf)
    w = (weights.w0, weights.w1, weights.w2)
    prev = weights.momentum
    if prev is None:
        prev = tuple(torch.zeros_like(x) for x in w)
    has_mom = tokens.momentum is not None
    out = q.new_empty(q.shape, dtype=torch.float32)
    start = 0
    while start < total:
        end = min(start + chunk_size, total)
        q_start, q_end = max(start - num_pending, 0), end - num_pending
        last = end - start < chunk_size or end == total
        if not last:
            rates = (cc(tokens.lr0[:, start:end]), cc(tokens.lr1[:, start:end]), cc(tokens.lr2[:, start:end]))
            mom = cc(tokens.momentum[:, start:end]) if has_mom else None
            args = (*w, *prev, *weights.norms)
            if q_end - q_start == end - start:
                res = fused(*args, cc(qb[:, q_start:q_end]), cc(kb[:, start:end]), cc(vb[:, start:end]), *rates, mom, use_muon)
                out[:, q_start:q_end] = res[0]
                res = res[1:]
            else:
                if q_end > q_start:
                    out[:, q_start:q_end] = apply_only(*w, cc(qb[:, q_start:q_end]))
                res = update_only(*args, cc(kb[:, start:end]), cc(vb[:, start:end]), *rates, mom, use_muon)
            w, prev = res[:3], res[3:]
            start = end
            continue
        if q_end > q_start:
            out[:, q_start:q_end] = apply_only(*w, qb[:, q_start:q_end])  # last chunk: apply only
        new_weights = FastWeights(*w, weights.norms, _momentum_out(weights, prev, has_mom, start, num_pending))
        return out, new_weights, end - start
    return q.new_zeros(q.shape), weights, num_pending


def _momentum_out(weights: FastWeights, prev, has_mom: bool, last_start: int, num_pending: int):
    """The FastWeights.momentum the reference would hold: None until an update with momentum ran."""
    if not has_mom:
        return None
    if weights.momentum is None and last_start == 0:  # no update happened in this call, none before
        return None
    return tuple(prev)


def scan_flops(num_heads_total: int, tokens: int, d: int, dh: int, chunk_size: int, use_muon: bool) -> dict[str, float]:
    """Matrix-product FLOPs of a scan over ``tokens`` new tokens (no pending), per the formulas in the docstring:
    apply 3 products of 2*N*d*dh; update 6 products of 2*C*d*dh per updated chunk; Newton-Schulz per chunk
    and matrix 5 x (2m^2n + 2m^3 + 2m^2n), m = min(d, dh), n = max(d, dh)."""
    updates = max((tokens - 1) // chunk_size, 0)
    apply = 3 * 2 * tokens * d * dh
    update = updates * 6 * 2 * chunk_size * d * dh
    m, n = min(d, dh), max(d, dh)
    ns = updates * 3 * 5 * (4 * m * m * n + 2 * m**3) if use_muon else 0
    per = num_heads_total
    return {"apply": per * apply, "update": per * update, "newton_schulz": per * ns, "total": per * (apply + update + ns)}
