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
        # explicit transposed copy: cuBLAS ran batched x @ x^T (bf16, [12, 512, 512]) ~7x slower than x @ y
        gram = x @ x.transpose(-1, -2).contiguous()
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


class _ChunkGraph:
    """The compiled apply+update step of one full chunk, captured once as a CUDA graph over static buffers.

    Why: a chunk is ~0.1-0.3 ms of GPU work, and the compiled step alone launches ~40 kernels through Python;
    replaying a graph makes the host cost per chunk ~10 launches (copies of the chunk's inputs into the static
    buffers, which also do the fp32 -> bf16 cast, the replay, and the copy of the outputs). The new weights and
    momentum are written back into the same static buffers inside the graph, so they never leave it between
    chunks. Inference only (no autograd).
    """

    def __init__(self, bh: int, chunk: int, d: int, dh: int, has_mom: bool, use_muon: bool, device) -> None:
        f32, bf = torch.float32, torch.bfloat16
        z = lambda *shape, dtype=f32: torch.zeros(*shape, dtype=dtype, device=device)
        self.w = [z(bh, dh, d), z(bh, d, dh), z(bh, dh, d)]
        self.p = [torch.zeros_like(t) for t in self.w]
        self.n = [z(bh, dh, 1), z(bh, d, 1), z(bh, dh, 1)]
        self.q, self.k, self.v = (z(bh, chunk, d, dtype=bf) for _ in range(3))
        self.lr = [z(bh, chunk, 1) for _ in range(3)]
        self.mom = z(bh, chunk, 1) if has_mom else None
        self.out = z(bh, chunk, d, dtype=bf)
        cuda = torch.device(device).type == "cuda"
        step = _compiled("apply_update", apply_update_step, None) if cuda else apply_update_step
        for t in (*self.w, *self.n):
            t.normal_()  # warm-up on finite values
        for t in self.lr:
            t.fill_(1e-3)

        def body():
            res = step(*self.w, *self.p, *self.n, self.q, self.k, self.v, *self.lr, self.mom, use_muon)
            self.out.copy_(res[0])
            for dst, src in zip((*self.w, *self.p), res[1:]):
                dst.copy_(src)

        if not cuda:  # CPU (tests): the same buffers and body, run eagerly
            self.replay = body
            return
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                body()
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            body()
        self.replay = self.graph.replay


_GRAPHS: dict[tuple, _ChunkGraph] = {}


def _scan_graphed(weights: FastWeights, q: Tensor, tokens: TokenStream, num_pending: int, chunk_size: int, use_muon: bool):
    """fast_weight_scan_gpu without autograd, through the CUDA graph of one chunk. Pending tokens (queries
    answered in an earlier call) occupy the first rows of the first chunk; their query rows are zeros here and
    their outputs are dropped."""
    bh, total, d = tokens.k.shape
    dh = weights.w0.shape[1]
    has_mom = tokens.momentum is not None
    key = (bh, chunk_size, d, dh, has_mom, use_muon, q.device)
    if key not in _GRAPHS:
        _GRAPHS[key] = _ChunkGraph(bh, chunk_size, d, dh, has_mom, use_muon, q.device)
    g = _GRAPHS[key]
    for dst, src in zip(g.w, (weights.w0, weights.w1, weights.w2)):
        dst.copy_(src)
    for dst, src in zip(g.n, weights.norms):
        dst.copy_(src)
    for i, dst in enumerate(g.p):
        if weights.momentum is None:
            dst.zero_()
        else:
            dst.copy_(weights.momentum[i])
    out = torch.empty(q.shape, dtype=torch.float32, device=q.device)
    start, updated = 0, False
    while total - start > chunk_size:  # a full chunk with at least one token after it: apply + update
        end = start + chunk_size
        q_start, q_end = max(start - num_pending, 0), end - num_pending
        lo = min(q_start + num_pending - start, chunk_size)  # > 0 only in the first chunk, with pending tokens
        if lo:
            g.q[:, :lo].zero_()
        g.q[:, lo:].copy_(q[:, q_start:q_end])
        g.k.copy_(tokens.k[:, start:end])
        g.v.copy_(tokens.v[:, start:end])
        for dst, src in zip(g.lr, (tokens.lr0, tokens.lr1, tokens.lr2)):
            dst.copy_(src[:, start:end])
        if has_mom:
            g.mom.copy_(tokens.momentum[:, start:end])
        g.replay()
        if q_end > q_start:
            out[:, q_start:q_end] = g.out[:, lo:]
        start, updated = end, True
    w = tuple(t.clone() for t in g.w)
    q_start = max(start - num_pending, 0)
    if q.shape[1] > q_start:
        out[:, q_start:] = apply_step(*w, q[:, q_start:].to(torch.bfloat16))
    momentum = tuple(t.clone() for t in g.p) if has_mom and (updated or weights.momentum is not None) else None
    return out, FastWeights(*w, weights.norms, momentum), total - start


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
    graphs_setting = os.environ.get("SPATIAL_TTT_CUDAGRAPHS", "1")  # 1: own chunk graph, trees: torch's, 0: none
    if compile and not training and q.is_cuda and graphs_setting == "1" and tokens.length > 0:
        return _scan_graphed(weights, q, tokens, num_pending, chunk_size, use_muon)
    graphs = compile and not training and q.is_cuda and graphs_setting == "trees"
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
