"""The spatial conv's stencil as one Triton kernel (CUDA inference), reading its frames where they lie.

Same result as :func:`spatial_ttt.layers.spatial_conv.depthwise_conv3`, the reference: T frames between a frame
before and a frame after them (replicate padding in time is the caller's choice of those two) and a depthwise
kernel [C, 1, 3, 3, 3] -> T frames, replicate padding in H and W by clamped indices, the 27 taps summed in fp32 in
the reference's order (as fused multiply-adds, so the last bits of an fp32 sum may differ), the output in the
input's dtype. Forward only: :meth:`FastWeightKernel.fused` picks it where no autograd is needed. Two entry points
share the kernel:

* :func:`depthwise_conv3_triton`: the reference's signature, frames [..., T+2, H, W, C] padded in time;
* :func:`conv_token_groups_triton`: :func:`~spatial_ttt.layers.spatial_conv.conv_token_groups`'s signature, the
  frame groups read from and written to their rows of the token sequence [B, L, C] (a prompt's pieces and a
  stream's), their neighbours from their own tensors: no gather of the groups into a volume, no padded copy, no
  scatter back (three passes over the groups' rows, session 22). The rows between the groups (text) are copied
  by a second kernel, :func:`_copy_gaps_kernel`, instead of a clone of every row that the stencil then overwrote
  (a read and a write of all of a TTT layer's three conv inputs, session 23).

The kernel finds frame i of the T at row ``frames[i] * stride_frame`` of its input (and writes its output at
``out_frames[i]``), the frame before them in ``first`` and the one after in ``last`` where given, else frame 0
and frame T-1 again (replicate padding). One program per (tile of tokens within a frame, run of ``block_t``
output frames, block of channels): it walks its input frames in time, loading each frame's 9 spatial taps once
(clamped rows and columns) and adding them to the three output frames they feed. Channels are the last,
contiguous dimension, so every load is whole rows of channels (coalesced); neighbouring taps overlap and come
from L1/L2, so DRAM traffic stays near one read and one write of the tokens (the op is memory-bound).
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

# block_hw tokens of a frame x block_channels per program, block_t output frames. 32 tokens: 0.23 against 0.36 ms
# for a 1024-frame prompt's piece of 95 groups with 16 (H200, bench_conv's rows, sessions 23 calls 2 and 3)
TILE = dict(block_hw=32, block_channels=64, block_t=8, num_warps=4)
GAP_TILE = dict(block_rows=8, block_channels=256, num_warps=4)  # a prompt's gaps: 7 rows (timestamps, start, end)


def _jit(fn):
    # The frame counts and sizes are not specialised on (Triton makes an integer equal to 1 a constant and notes
    # one divisible by 16): each value of T would be a new compilation (~0.6 s on an H200), paid where a user waits
    # (a stream's first question compiled 7 in session 18); so would each of a stream's first and later pieces
    # (with or without a neighbour). The strides keep theirs: aligned rows of channels are what lets it load 16
    # bytes at a time.
    return fn if triton is None else triton.jit(fn, do_not_specialize=["T", "H", "W", "has_first", "has_last"])


def _jit_gaps(fn):
    # the rows and groups of a piece change with every piece: not specialised, as the stencil's frame counts
    return fn if triton is None else triton.jit(fn, do_not_specialize=["n", "L"])


@_jit
def _conv3_kernel(
    x, first, last, frames, out, out_frames, weight, T, H, W, C, has_first, has_last,
    stride_xn, stride_xf, stride_xh, stride_xw, stride_fn, stride_fh, stride_fw, stride_ln, stride_lh, stride_lw,
    stride_c, stride_on, stride_of, stride_oh, stride_ow,
    BLOCK_HW: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_T: tl.constexpr,
):
    tiles_hw, tiles_t = tl.cdiv(H * W, BLOCK_HW), tl.cdiv(T, BLOCK_T)
    program = tl.program_id(0)
    hw = (program % tiles_hw) * BLOCK_HW + tl.arange(0, BLOCK_HW)  # tokens of one frame, in raster order
    t0 = (program // tiles_hw % tiles_t) * BLOCK_T  # the first output frame
    n = (program // (tiles_hw * tiles_t)).to(tl.int64)
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
        p = t0 + s  # the input frame: 0 the one before the T, 1..T theirs, T + 1 the one after
        row = tl.load(frames + tl.minimum(tl.maximum(p - 1, 0), T - 1)).to(tl.int64)  # (0 / T + 1: replicate)
        frame = x + n * stride_xn + row * stride_xf
        step_h, step_w = stride_xh, stride_xw
        if (p == 0) & (has_first != 0):
            frame, step_h, step_w = first + n * stride_fn, stride_fh, stride_fw
        if (p == T + 1) & (has_last != 0):
            frame, step_h, step_w = last + n * stride_ln, stride_lh, stride_lw
        present = mask & (p < T + 2)
        for b in tl.static_range(3):
            rows = tl.minimum(tl.maximum(h + (b - 1), 0), H - 1)  # replicate padding: clamped indices
            for c in tl.static_range(3):
                cols = tl.minimum(tl.maximum(w + (c - 1), 0), W - 1)
                offset = rows.to(tl.int64) * step_h + cols.to(tl.int64) * step_w
                tap = tl.load(frame + offset[:, None] + lanes, mask=present, other=0.0).to(tl.float32)
                k = weight + (b * 3 + c) * C + channel  # weight [27, C]: tap (a, b, c) at row 9a + 3b + c
                older += tap * tl.load(k + 18 * C, mask=channel < C, other=0.0).to(tl.float32)[None, :]
                old += tap * tl.load(k + 9 * C, mask=channel < C, other=0.0).to(tl.float32)[None, :]
                new += tap * tl.load(k, mask=channel < C, other=0.0).to(tl.float32)[None, :]
        done = p - 2  # the output frame complete after this input frame
        out_row = tl.load(out_frames + tl.minimum(tl.maximum(done, 0), T - 1)).to(tl.int64)
        target = out + n * stride_on + out_row * stride_of
        place = (h.to(tl.int64) * stride_oh + w.to(tl.int64) * stride_ow)[:, None] + channel[None, :]
        tl.store(target + place, older.to(out.dtype.element_ty), mask=mask & (s >= 2) & (done < T))
        older, old = old, new


@_jit_gaps
def _copy_gaps_kernel(x, out, starts, n, L, size, C, stride_xb, stride_xl, stride_ob, stride_ol, stride_c,
                      BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """Copies gap g of the rows around n groups of ``size`` rows at rows ``starts``: the rows before group g (after
    group g - 1), g = n those after the last group, up to row L. One program per (gap, block of channels, item)."""
    g = tl.program_id(0)
    channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    b = tl.program_id(2).to(tl.int64)
    lo = 0
    if g > 0:
        lo = tl.load(starts + g - 1).to(tl.int32) + size
    hi = L
    if g < n:
        hi = tl.load(starts + g).to(tl.int32)
    lanes = (channel * stride_c)[None, :]
    first = lo
    while first < hi:  # (a while loop: Triton's interpreter cannot range over loaded bounds)
        rows = first + tl.arange(0, BLOCK_R)
        mask = (rows < hi)[:, None] & (channel < C)[None, :]
        rows = rows.to(tl.int64)[:, None]
        values = tl.load(x + b * stride_xb + rows * stride_xl + lanes, mask=mask)
        tl.store(out + b * stride_ob + rows * stride_ol + lanes, values, mask=mask)
        first += BLOCK_R


def _on_device_of(t: Tensor) -> contextlib.AbstractContextManager:
    """Triton launches on the current device: make it the tensors' (a model on cuda:1 under torchrun, say)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _launch(x: Tensor, first: Tensor | None, last: Tensor | None, frames: Tensor, out: Tensor, out_frames: Tensor,
            strides: tuple[int, ...], out_strides: tuple[int, ...], grid_hw: tuple[int, int], weight: Tensor,
            tile: dict[str, int]) -> None:
    """One launch over T = len(frames) frames of [N, H, W, C] each. ``strides`` / ``out_strides``: per (item n,
    frame unit, h, w) of x / out; ``first`` / ``last`` [N, H, W, C] or None. Channels must have one stride."""
    tile = {**TILE, **tile}
    n, t, c = x.shape[0], frames.numel(), weight.shape[0]
    h, w = grid_hw
    if n * t * h * w * c == 0:
        return
    neighbours = [x if m is None else m for m in (first, last)]
    if len({x.stride(-1), *(m.stride(-1) for m in neighbours)}) > 1:
        raise ValueError("the stencil's inputs must share one channel stride")
    block_channels = min(tile["block_channels"], triton.next_power_of_2(c))
    # One value whatever T (a constexpr: each value is a compilation). A piece shorter than block_t runs masked
    # frames, which load and store nothing.
    block_t = tile["block_t"]
    grid = (n * triton.cdiv(t, block_t) * triton.cdiv(h * w, tile["block_hw"]), triton.cdiv(c, block_channels))
    neighbour_strides = [s for m in neighbours for s in (m.stride(0), m.stride(-3), m.stride(-2))]
    with _on_device_of(x):
        _conv3_kernel[grid](
            x, *neighbours, frames, out, out_frames, weight.reshape(c, 27).t().contiguous(), t, h, w, c,
            int(first is not None), int(last is not None), *strides, *neighbour_strides, x.stride(-1), *out_strides,
            BLOCK_HW=tile["block_hw"], BLOCK_C=block_channels, BLOCK_T=block_t, num_warps=tile["num_warps"],
        )


def depthwise_conv3_triton(frames: Tensor, weight: Tensor, **tile: int) -> Tensor:
    """frames [..., T+2, H, W, C], weight [C, 1, 3, 3, 3] -> [..., T, H, W, C] (see the module docstring).
    ``tile`` overrides entries of :data:`TILE` (benchmarks sweep them); any strides are read as they are."""
    if triton is None:
        raise RuntimeError("the spatial conv's Triton kernel needs Triton; ttt_kernel='reference' runs without it")
    *lead, padded_t, h, w, c = frames.shape
    t = padded_t - 2
    volume = frames.reshape(-1, padded_t, h, w, c)  # a view for the callers' inputs (a copy only if it must)
    out = torch.empty(*lead, t, h, w, c, dtype=frames.dtype, device=frames.device)
    index = torch.arange(t + 1, device=frames.device)  # frame i of the T: volume frame i + 1
    _launch(volume, volume[:, 0], volume[:, -1], index[1:], out.view(volume.shape[0], t, h, w, c), index[:t],
            tuple(volume.stride(i) for i in range(4)), (t * h * w * c, h * w * c, w * c, c), (h, w), weight, tile)
    return out


def launch_groups(tokens: Tensor, starts: Tensor, previous: Tensor | None, following: Tensor | None,
                  grid_hw: tuple[int, int], weight: Tensor, out: Tensor, tile: dict[str, int]) -> None:
    """The stencil over the frame groups of tokens [B, L, C] at rows ``starts``, written to the same rows of
    ``out`` (like tokens); its other rows untouched."""
    h, w = grid_hw
    rows = tuple(tokens.stride(i) for i in (0, 1)) + (w * tokens.stride(1), tokens.stride(1))
    out_rows = tuple(out.stride(i) for i in (0, 1)) + (w * out.stride(1), out.stride(1))
    first, last = (None if m is None else m.view(m.shape[0], h, w, m.shape[-1]) for m in (previous, following))
    _launch(tokens, first, last, starts, out, starts, rows, out_rows, grid_hw, weight, tile)


def conv_token_groups_triton(tokens: Tensor, starts: Tensor, previous: Tensor | None, following: Tensor | None,
                             grid_hw: tuple[int, int], weight: Tensor, **tile: int) -> Tensor:
    """:func:`spatial_ttt.layers.spatial_conv.conv_token_groups` by the kernel: tokens [B, L, C] whose frame groups
    of h*w rows start at rows ``starts`` [n] (on the tokens' device), their neighbours ``previous`` / ``following``
    [B, h*w, C] or None -> tokens with each group's rows convolved, every other row as it was."""
    if triton is None:
        raise RuntimeError("the spatial conv's Triton kernel needs Triton; ttt_kernel='reference' runs without it")
    if starts.numel() == 0:
        return tokens.clone()
    out = torch.empty(tokens.shape, dtype=tokens.dtype, device=tokens.device)
    launch_groups(tokens, starts, previous, following, grid_hw, weight, out, tile)
    batch, length, channels = tokens.shape
    with _on_device_of(tokens):
        _copy_gaps_kernel[(starts.numel() + 1, triton.cdiv(channels, GAP_TILE["block_channels"]), batch)](
            tokens, out, starts, starts.numel(), length, grid_hw[0] * grid_hw[1], channels, tokens.stride(0),
            tokens.stride(1), out.stride(0), out.stride(1), tokens.stride(2), BLOCK_R=GAP_TILE["block_rows"],
            BLOCK_C=GAP_TILE["block_channels"], num_warps=GAP_TILE["num_warps"],
        )
    return out
