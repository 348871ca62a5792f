"""The spatial conv's stencil as one Triton kernel (CUDA inference).

Same signature and result as :func:`spatial_ttt.layers.spatial_conv.depthwise_conv3`, the reference:
frames [..., T+2, H, W, C] (already padded in time) and a depthwise kernel [C, 1, 3, 3, 3] -> [..., T, H, W, C],
replicate padding in H and W by clamped indices, the 27 taps summed in fp32 in the reference's order (as fused
multiply-adds, so the last bits of an fp32 sum may differ), the output in the input's dtype. Forward only:
:meth:`FastWeightKernel.fused` picks it where no autograd is needed.

One program per (tile of tokens within a frame, run of ``block_t`` output frames, block of channels): it walks
its input frames in time, loading each frame's 9 spatial taps once (clamped rows and columns) and adding them to
the three output frames they feed. Channels are the last, contiguous dimension, so every load is whole rows of
channels (coalesced); neighbouring taps overlap and come from L1/L2, so DRAM traffic stays near one read and one
write of the tokens (the op is memory-bound).
"""

from __future__ import annotations  # keeps the kernel's ``tl.constexpr`` annotations unevaluated without Triton

import contextlib

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs have no Triton; the stencil is only chosen on CUDA
    triton = None

TILE = dict(block_hw=16, block_channels=64, block_t=8, num_warps=4)  # block_t: output frames per program


def _jit(fn):
    # The frame counts and sizes are not specialised on (Triton makes an integer equal to 1 a constant and notes
    # one divisible by 16): each value of T would be a new compilation (~0.6 s on an H200), paid where a user waits
    # (a stream's first question compiled 7 in session 18). The strides keep theirs: aligned rows of channels are
    # what lets it load 16 bytes at a time.
    return fn if triton is None else triton.jit(fn, do_not_specialize=["T", "H", "W"])


@_jit
def _conv3_kernel(
    x, weight, out, T, H, W, C, stride_n, stride_t, stride_h, stride_w, stride_c,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    tiles_hw, tiles_t = tl.cdiv(H * W, BLOCK_HW), tl.cdiv(T, BLOCK_T)
    program = tl.program_id(0)
    hw = (program % tiles_hw) * BLOCK_HW + tl.arange(0, BLOCK_HW)  # tokens of one frame, in raster order
    t0 = (program // tiles_hw % tiles_t) * BLOCK_T  # the first output frame
    n = program // (tiles_hw * tiles_t)
    channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask = (hw < H * W)[:, None] & (channel < C)[None, :]
    h, w = hw // W, hw % W
    lanes = (channel * stride_c)[None, :]
    # Input frame s feeds output frames s - 2, s - 1 and s (temporal taps 2, 1, 0): each of its 9 spatial taps is
    # loaded once and added to the three running sums, so every output still sums its 27 taps in the reference's
    # order (time, then row, then column).
    older = tl.zeros((BLOCK_HW, BLOCK_C), dtype=tl.float32)  # output frame s - 2
    old = tl.zeros((BLOCK_HW, BLOCK_C), dtype=tl.float32)  # s - 1
    for s in range(BLOCK_T + 2):  # the last block may run past T + 2 input frames: masked
        new = tl.zeros((BLOCK_HW, BLOCK_C), dtype=tl.float32)  # s
        frame = x + n.to(tl.int64) * stride_n + (t0 + s).to(tl.int64) * stride_t
        present = mask & (t0 + s < T + 2)
        for b in tl.static_range(3):
            row = tl.minimum(tl.maximum(h + (b - 1), 0), H - 1)  # replicate padding: clamped indices
            for c in tl.static_range(3):
                col = tl.minimum(tl.maximum(w + (c - 1), 0), W - 1)
                offset = row.to(tl.int64) * stride_h + col.to(tl.int64) * stride_w
                tap = tl.load(frame + offset[:, None] + lanes, mask=present, other=0.0).to(tl.float32)
                k = weight + (b * 3 + c) * C + channel  # weight [27, C]: tap (a, b, c) at row 9a + 3b + c
                older += tap * tl.load(k + 18 * C, mask=channel < C, other=0.0).to(tl.float32)[None, :]
                old += tap * tl.load(k + 9 * C, mask=channel < C, other=0.0).to(tl.float32)[None, :]
                new += tap * tl.load(k, mask=channel < C, other=0.0).to(tl.float32)[None, :]
        target = ((n * T + t0 + s - 2).to(tl.int64) * H * W + hw)[:, None] * C + channel[None, :]
        tl.store(out + target, older.to(out.dtype.element_ty), mask=mask & (s >= 2) & (t0 + s - 2 < T))
        older, old = old, new


def depthwise_conv3_triton(frames: Tensor, weight: Tensor, **tile: int) -> Tensor:
    """frames [..., T+2, H, W, C], weight [C, 1, 3, 3, 3] -> [..., T, H, W, C] (see the module docstring).
    ``tile`` overrides entries of :data:`TILE` (benchmarks sweep them); any strides are read as they are."""
    if triton is None:
        raise RuntimeError("the spatial conv's Triton kernel needs Triton; ttt_kernel='reference' runs without it")
    tile = {**TILE, **tile}
    *lead, padded_t, h, w, c = frames.shape
    t = padded_t - 2
    volume = frames.reshape(-1, padded_t, h, w, c)  # a view for the callers' inputs (a copy only if it must)
    out = torch.empty(*lead, t, h, w, c, dtype=frames.dtype, device=frames.device)
    if out.numel() == 0:
        return out
    block_channels = min(tile["block_channels"], triton.next_power_of_2(c))
    # One value whatever T (a constexpr: each value is a compilation). A piece shorter than block_t runs masked
    # frames, which load and store nothing.
    block_t = tile["block_t"]
    grid = (volume.shape[0] * triton.cdiv(t, block_t) * triton.cdiv(h * w, tile["block_hw"]),
            triton.cdiv(c, block_channels))
    # Triton launches on the current device: make it the tensors' (a model on cuda:1 under torchrun, say)
    with torch.cuda.device(frames.device) if frames.is_cuda else contextlib.nullcontext():
        _conv3_kernel[grid](
            volume, weight.reshape(c, 27).t().contiguous(), out, t, h, w, c, *volume.stride(),
            BLOCK_HW=tile["block_hw"], BLOCK_C=block_channels, BLOCK_T=block_t, num_warps=tile["num_warps"],
        )
    return out
