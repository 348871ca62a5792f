"""GPU path of the spatial-predictive depthwise 3x3x3 conv over each video's tokens (replicate padding).

Why: on CUDA the module path (gather the video's tokens, transpose to [C, T, H, W], replicate pad, PyTorch's
native depthwise-3D kernel, scatter back) measured ~4 ms per conv at 44k tokens on an H100 (profile in
benchmarks/RESULTS.md), about a quarter of a TTT layer. Here the volume stays channels-last ([T, H, W, C]: the
token rows as they are), the replicate padding is an index clamp, and the 27 taps are one fused, memory-bound
kernel (torch.compile), accumulating in fp32.
"""

from __future__ import annotations

import torch
from torch import Tensor

_compiled = None


def depthwise_conv3_replicate(vol: Tensor, weight: Tensor) -> Tensor:
    """vol [T, H, W, C], weight [C, 3, 3, 3] -> [T, H, W, C]; same as Conv3d(groups=C, padding=1, replicate)."""
    t, h, w, _ = vol.shape
    dev = vol.device
    it = torch.arange(-1, t + 1, device=dev).clamp(0, t - 1)
    ih = torch.arange(-1, h + 1, device=dev).clamp(0, h - 1)
    iw = torch.arange(-1, w + 1, device=dev).clamp(0, w - 1)
    padded = vol[it][:, ih][:, :, iw].float()
    wf = weight.float()
    out = None
    for a in range(3):
        for b in range(3):
            for c in range(3):
                term = padded[a : a + t, b : b + h, c : c + w] * wf[:, a, b, c]
                out = term if out is None else out + term
    return out.to(vol.dtype)


def _conv_fn():
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(depthwise_conv3_replicate, dynamic=False)
    return _compiled


def conv_video_tokens_gpu(x: Tensor, weight: Tensor, videos, compile: bool | None = None) -> Tensor:
    """conv_video_tokens for x [B, S, C] with a depthwise kernel ``weight`` [C, 1, 3, 3, 3]."""
    if not videos:
        return x
    if compile is None:
        compile = x.is_cuda
    conv = _conv_fn() if compile else depthwise_conv3_replicate
    kernel = weight[:, 0]
    out = x.clone()
    for video in videos:
        t, h, w = video.grid
        tokens = x[video.row].index_select(0, video.indices.to(x.device))  # [t*h*w, C], raster (t, h, w)
        out[video.row].index_copy_(0, video.indices.to(x.device), conv(tokens.view(t, h, w, -1), kernel).view(t * h * w, -1))
    return out
