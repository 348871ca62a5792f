"""The spatial conv's stencil as one Triton kernel (CUDA inference).

Same signature and result as :func:`spatial_ttt.layers.spatial_conv.depthwise_conv3`, the reference:
frames [..., T+2, H, W, C] (already padded in time) and a depthwise kernel [C, 1, 3, 3, 3] -> [..., T, H, W, C],
replicate padding in H and W by clamped indices, the 27 taps summed in fp32 in the reference's order, the output
in the input's dtype. Forward only: :meth:`FastWeightKernel.fused` picks it where no autograd is needed.

One program per (tile of output tokens in raster order, block of channels). Channels are the last, contiguous
dimension, so every tap loads whole rows of channels (coalesced); the 27 taps of neighbouring tokens overlap and
are served from L1/L2, so DRAM traffic stays near one read and one write of the tokens (the op is memory-bound).
"""

from __future__ import annotations  # keeps the kernel's ``tl.constexpr`` annotations unevaluated without Triton

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs have no Triton; the stencil is only chosen on CUDA
    triton = None

BLOCK_TOKENS, BLOCK_CHANNELS, NUM_WARPS = 32, 128, 4


def _jit(fn):
    return fn if triton is None else triton.jit(fn)


@_jit
def _conv3_kernel(
    x, weight, out, tokens, T, H, W, C, stride_n, stride_t, stride_h, stride_w, stride_c,
    BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr,
):
    token = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)  # output tokens, flat over (n, t, h, w)
    channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (token < tokens)[:, None] & (channel < C)[None, :]
    w = token % W
    h = (token // W) % H
    t = (token // (W * H)) % T
    n = token // (W * H * T)
    base = n.to(tl.int64) * stride_n + t.to(tl.int64) * stride_t  # output frame t reads input frames t..t+2
    lanes = (channel * stride_c)[None, :]
    acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32)
    for a in tl.static_range(3):
        for b in tl.static_range(3):
            row = tl.minimum(tl.maximum(h + (b - 1), 0), H - 1)
            for c in tl.static_range(3):
                col = tl.minimum(tl.maximum(w + (c - 1), 0), W - 1)
                offset = base + a * stride_t + row.to(tl.int64) * stride_h + col.to(tl.int64) * stride_w
                tap = tl.load(x + offset[:, None] + lanes, mask=mask, other=0.0).to(tl.float32)
                k = tl.load(weight + channel * 27 + (a * 9 + b * 3 + c), mask=channel < C, other=0.0)
                acc += tap * k.to(tl.float32)[None, :]
    target = token.to(tl.int64)[:, None] * C + channel[None, :]
    tl.store(out + target, acc.to(out.dtype.element_ty), mask=mask)


def depthwise_conv3_triton(
    frames: Tensor, weight: Tensor, *, block_tokens: int = BLOCK_TOKENS, block_channels: int = BLOCK_CHANNELS,
    num_warps: int = NUM_WARPS,
) -> Tensor:
    """frames [..., T+2, H, W, C], weight [C, 1, 3, 3, 3] -> [..., T, H, W, C] (see the module docstring).
    The keyword arguments are the tile (benchmarks sweep them); any strides are read as they are."""
    *lead, padded_t, h, w, c = frames.shape
    t = padded_t - 2
    volume = frames.reshape(-1, padded_t, h, w, c)  # a view for the callers' inputs (a copy only if it must)
    out = torch.empty(*lead, t, h, w, c, dtype=frames.dtype, device=frames.device)
    tokens = volume.shape[0] * t * h * w
    if tokens == 0:
        return out
    block_channels = min(block_channels, triton.next_power_of_2(c))
    grid = (triton.cdiv(tokens, block_tokens), triton.cdiv(c, block_channels))
    _conv3_kernel[grid](
        volume, weight.reshape(c, 27).contiguous(), out, tokens, t, h, w, c, *volume.stride(),
        BLOCK_T=block_tokens, BLOCK_C=block_channels, num_warps=num_warps,
    )
    return out
