"""The fast-weight operator of Spatial-TTT: SwiGLU fast weights, applied then updated chunk by chunk.

Everything here is the plain PyTorch reference (CPU or GPU, differentiable). Shapes use a flattened
batch-of-heads dimension ``BH = batch * num_lact_heads``; tokens are rows:

    q, k, v:      [BH, N, d]
    lr0/lr1/lr2:  [BH, N, 1]   per-token learning rates (already softplus'ed, fp32)
    momentum:     [BH, N, 1]   per-token momentum gates in (0, 1)
    w0, w2:       [BH, dh, d]; w1: [BH, d, dh]

f(u) = W1 (silu(W0 u) * (W2 u)); one update is one gradient-descent step on -<f(k), v> with per-token rates,
optionally combined with momentum, orthogonalised by Newton-Schulz (Muon) and followed by row renormalisation.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

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


def swiglu_apply(weights: FastWeights, x: Tensor) -> Tensor:
    """f(x) for rows x [BH, N, d] -> [BH, N, d]."""
    gate = x @ weights.w0.transpose(-1, -2)
    hidden = x @ weights.w2.transpose(-1, -2)
    return (F.silu(gate) * hidden) @ weights.w1.transpose(-1, -2)


def swiglu_descent(
    weights: FastWeights, k: Tensor, v: Tensor, lr0: Tensor, lr1: Tensor, lr2: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Negative gradient of sum_t lr_t * -<f(k_t), v_t> w.r.t. (W0, W1, W2), each scaled by its own rates."""
    gate = k @ weights.w0.transpose(-1, -2)  # [BH, C, dh]
    hidden = k @ weights.w2.transpose(-1, -2)
    sig = torch.sigmoid(gate)
    silu_gate = gate * sig
    d_hidden = v @ weights.w1  # dL/d(silu(g)*h) rows: [BH, C, dh]
    d_silu = sig * (1 + gate * (1 - sig))  # silu'(g)
    dw1 = (v * lr1).transpose(-1, -2) @ (silu_gate * hidden)
    dw2 = (d_hidden * silu_gate * lr2).transpose(-1, -2) @ k
    dw0 = (d_hidden * hidden * d_silu * lr0).transpose(-1, -2) @ k
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
) -> FastWeights:
    """One update on a chunk of keys/values [BH, C, d]; momentum [BH, C, 1] or None (no momentum)."""
    steps = swiglu_descent(weights, k, v, lr0, lr1, lr2)
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

    @staticmethod
    def cat(parts: list["TokenStream"]) -> "TokenStream":
        fields = []
        for items in zip(*parts):
            fields.append(None if items[0] is None else torch.cat(items, dim=1))
        return TokenStream(*fields)

    @property
    def length(self) -> int:
        return self.k.shape[1]


def fast_weight_scan(
    weights: FastWeights,
    q: Tensor,
    tokens: TokenStream,
    num_pending: int,
    chunk_size: int,
    use_muon: bool,
) -> tuple[Tensor, FastWeights, int]:
    """Apply-then-update over exact chunks of ``chunk_size`` tokens.

    ``tokens`` holds ``num_pending`` tokens not yet used in an update (they start on a chunk boundary) followed
    by the new tokens, whose queries are ``q``. Each chunk's queries are answered by the weights as they were
    before the chunk; a complete chunk then updates the weights, but only if at least one token follows it here
    (the reference's last-chunk rule). Returns the outputs for ``q``, the new weights and the number of trailing
    tokens still pending.
    """
    total = tokens.length
    outputs = []
    start = 0
    while start < total:
        end = min(start + chunk_size, total)
        q_start, q_end = max(start - num_pending, 0), end - num_pending
        if q_end > q_start:
            outputs.append(swiglu_apply(weights, q[:, q_start:q_end]))
        if end - start < chunk_size or end == total:
            return torch.cat(outputs, dim=1), weights, end - start
        chunk = tokens.slice(start, end)
        weights = fast_weight_update(weights, *chunk, use_muon=use_muon)
        start = end
    return q.new_zeros(q.shape), weights, num_pending  # no tokens at all
