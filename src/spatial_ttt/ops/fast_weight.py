"""The fast-weight operator of Spatial-TTT: SwiGLU fast weights, applied then updated chunk by chunk.

Everything here is the plain PyTorch reference (CPU or GPU, differentiable), the source of truth for the
compiled and graphed kernels (:mod:`spatial_ttt.ops.fast_weight_kernels`). Shapes use a flattened
batch-of-heads dimension ``BH = batch * num_lact_heads``; tokens are rows:

    q, k, v:      [BH, N, d]
    lr0/lr1/lr2:  [BH, N, 1]   per-token learning rates (already softplus'ed, fp32)
    momentum:     [BH, N, 1]   per-token momentum gates in (0, 1)
    w0, w2:       [BH, dh, d]; w1: [BH, d, dh]

f(u) = W1 (silu(W0 u) * (W2 u)); one update is one gradient-descent step on -<f(k), v> with per-token rates,
optionally combined with momentum, orthogonalised by Newton-Schulz (Muon) and followed by row renormalisation.

``precision`` says how the matrix products run: "fp32" multiplies fp32 operands (the reference's inference path,
exact); "bf16" rounds both operands to bf16 and accumulates in fp32 (the fast mode; the product is returned as
bf16 and widened back, on CPU as on GPU). Weights, momentum and renormalisation stay fp32 in both. Queries and
keys enter products only, so the bf16 mode keeps them in bf16 (:func:`row_dtype`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

PRECISIONS = ("fp32", "bf16")

# Quintic Newton-Schulz coefficients of the reference (one triple per step).
NS_COEFFICIENTS = (
    (4.0848, -6.8946, 2.9270),
    (3.9505, -6.3029, 2.6377),
    (3.7418, -5.5913, 2.3037),
    (2.8769, -3.1427, 1.2046),
    (2.8366, -3.0525, 1.2012),
)


class FastWeights(NamedTuple):
    """The evolving fast weights of one TTT layer plus what their updates need."""

    w0: Tensor
    w1: Tensor
    w2: Tensor
    norms: tuple[Tensor, Tensor, Tensor]  # row norms of the initial weights, kept by renormalisation
    momentum: tuple[Tensor, Tensor, Tensor] | None  # previous momentum-combined update, None before the first

    @classmethod
    def start(cls, w0: Tensor, w1: Tensor, w2: Tensor) -> "FastWeights":
        """Fast weights at the start of a sequence: the parameters themselves (fp32), norms taken from them."""
        w0, w1, w2 = (w.float() for w in (w0, w1, w2))
        norms = tuple(w.norm(dim=-1, keepdim=True) for w in (w0, w1, w2))
        return cls(w0, w1, w2, norms, None)  # type: ignore[arg-type]


class TokenStream(NamedTuple):
    """Per-token inputs of the fast-weight update: keys, values, three rates and momentum gates."""

    k: Tensor
    v: Tensor
    lr0: Tensor
    lr1: Tensor
    lr2: Tensor
    momentum: Tensor | None

    def slice(self, start: int, end: int | None = None) -> "TokenStream":
        return TokenStream(*(None if t is None else t[:, start:end] for t in self))

    def clone(self) -> "TokenStream":
        """A compact copy: a kept slice must not hold its whole source tensor alive."""
        return TokenStream(*(None if t is None else t.clone() for t in self))

    @staticmethod
    def cat(parts: list["TokenStream"]) -> "TokenStream":
        parts = [p for p in parts if p is not None and p.length]
        if len(parts) == 1:
            return parts[0]
        return TokenStream(*(None if items[0] is None else torch.cat(items, dim=1) for items in zip(*parts)))

    @property
    def length(self) -> int:
        return self.k.shape[1]


def row_dtype(precision: str) -> torch.dtype:
    """The dtype q and k rows are kept in: bf16 in the bf16 mode, whose products round them to bf16 anyway (the
    same numbers at half the memory); fp32 otherwise. Not v: it also enters the fp32 product v * lr1."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def matmul(a: Tensor, b: Tensor, precision: str) -> Tensor:
    """a @ b in fp32, or with bf16 operands and fp32 accumulation (result widened back to fp32)."""
    if precision == "bf16":
        return (a.bfloat16() @ b.bfloat16()).float()
    return a @ b


def swiglu_apply(weights: FastWeights, x: Tensor, precision: str = "fp32") -> Tensor:
    """f(x) for rows x [BH, N, d] -> [BH, N, d]."""
    gate = matmul(x, weights.w0.transpose(-1, -2), precision)
    hidden = matmul(x, weights.w2.transpose(-1, -2), precision)
    return matmul(F.silu(gate) * hidden, weights.w1.transpose(-1, -2), precision)


def swiglu_descent(
    weights: FastWeights, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor, precision: str = "fp32"
) -> tuple[Tensor, Tensor, Tensor]:
    """Negative gradient of sum_t lr_t * -<f(k_t), v_t> w.r.t. (W0, W1, W2), each scaled by its own rates."""
    gate = matmul(k, weights.w0.transpose(-1, -2), precision)  # [BH, C, dh]
    hidden = matmul(k, weights.w2.transpose(-1, -2), precision)
    sig = torch.sigmoid(gate)
    silu_gate = gate * sig
    d_hidden = matmul(v, weights.w1, precision)  # dL/d(silu(g)*h) rows: [BH, C, dh]
    d_silu = sig * (1 + gate * (1 - sig))  # silu'(g)
    dw1 = matmul((v * lr1).transpose(-1, -2), silu_gate * hidden, precision)
    dw2 = matmul((d_hidden * silu_gate * lr2).transpose(-1, -2), k, precision)
    dw0 = matmul((d_hidden * hidden * d_silu * lr0).transpose(-1, -2), k, precision)
    return dw0, dw1, dw2


def newton_schulz5(g: Tensor) -> Tensor:
    """Approximate orthogonalisation of a batch of matrices [BH, m, n], computed in bf16 like the reference."""
    x = g.bfloat16()
    transposed = g.shape[-2] > g.shape[-1]
    if transposed:
        x = x.transpose(-1, -2)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in NS_COEFFICIENTS:
        gram = x @ x.transpose(-1, -2)
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.transpose(-1, -2)
    return x.to(g.dtype)


def fast_weight_update(
    weights: FastWeights,
    k: Tensor,
    v: Tensor,
    lr0: Tensor,
    lr1: Tensor,
    lr2: Tensor,
    momentum: Tensor | None,
    use_muon: bool,
    precision: str = "fp32",
) -> FastWeights:
    """One update on a chunk of keys/values [BH, C, d]; momentum [BH, C, 1] or None (no momentum)."""
    steps = swiglu_descent(weights, k, v, lr0, lr1, lr2, precision)
    new_momentum = None
    if momentum is not None:
        beta = momentum.mean(dim=1, keepdim=True)  # one gate per head and chunk
        if weights.momentum is not None:
            steps = tuple(s + beta * prev for s, prev in zip(steps, weights.momentum))
        new_momentum = steps  # kept before Muon, as the reference does
    if use_muon:
        steps = tuple(newton_schulz5(s) for s in steps)
    updated = []
    for w, step, norm in zip((weights.w0, weights.w1, weights.w2), steps, weights.norms):
        w = w + step
        updated.append(w / (w.norm(dim=-1, keepdim=True) + 1e-5) * norm)
    return FastWeights(*updated, weights.norms, new_momentum)  # type: ignore[arg-type]


def chunk_step(
    weights: FastWeights, q: Tensor | None, chunk: TokenStream | None, use_muon: bool, precision: str
) -> tuple[Tensor | None, FastWeights]:
    """The one step every kernel implements: answer the queries q [BH, n, d] with the current weights, then
    update the weights on ``chunk`` (C tokens). Either part may be absent (None)."""
    out = None if q is None else swiglu_apply(weights, q, precision)
    if chunk is not None:
        weights = fast_weight_update(weights, *chunk, use_muon=use_muon, precision=precision)
    return out, weights


def scan_flops(num_heads_total: int, tokens: int, d: int, dh: int, chunk_size: int, use_muon: bool) -> dict[str, float]:
    """Matrix-product FLOPs of one prefill of ``tokens`` tokens: apply 3 products of 2*N*d*dh; update 6 products
    of 2*C*d*dh per updated chunk; Newton-Schulz per chunk and matrix 5 x (4m^2n + 2m^3), m = min(d, dh),
    n = max(d, dh)."""
    updates = max((tokens - 1) // chunk_size, 0)
    apply = 3 * 2 * tokens * d * dh
    update = updates * 6 * 2 * chunk_size * d * dh
    m, n = min(d, dh), max(d, dh)
    ns = updates * 3 * 5 * (4 * m * m * n + 2 * m**3) if use_muon else 0
    per = num_heads_total
    return {"apply": per * apply, "update": per * update, "newton_schulz": per * ns, "total": per * (apply + update + ns)}
