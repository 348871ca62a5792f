"""Spatial-predictive depthwise 3D convolution over each video's tokens (text tokens pass through)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..ops.spatial_conv_gpu import conv_video_tokens_gpu


@dataclass(frozen=True)
class VideoSpan:
    """One video's tokens in a batch row: their sequence indices in raster (t, h, w) order and grid."""

    row: int
    indices: Tensor  # [t*h*w] positions within the row
    grid: tuple[int, int, int]  # (t, h, w) in LLM tokens (after the 2x2 spatial merge)


def make_conv(channels: int) -> nn.Conv3d:
    """Depthwise 3x3x3, replicate padding, no bias; initialised as the identity (Dirac)."""
    conv = nn.Conv3d(channels, channels, 3, padding=1, padding_mode="replicate", groups=channels, bias=False)
    init_identity(conv)
    return conv


def init_identity(conv: nn.Conv3d) -> None:
    nn.init.dirac_(conv.weight, groups=conv.groups)  # groups: every depthwise channel passes itself


def conv_video_tokens(x: Tensor, conv: nn.Conv3d, videos: list[VideoSpan]) -> Tensor:
    """Applies ``conv`` to every video's tokens of x [B, S, C] as a [C, t, h, w] volume."""
    if not videos:
        return x
    if x.is_cuda:  # fused channels-last stencil (ops/spatial_conv_gpu.py)
        return conv_video_tokens_gpu(x, conv.weight, videos)
    out = x.clone()
    for video in videos:
        t, h, w = video.grid
        tokens = x[video.row, video.indices]  # [t*h*w, C]
        volume = tokens.transpose(0, 1).reshape(1, -1, t, h, w)
        # under autocast the conv computes in bf16 while x (and out) may be fp32
        out[video.row, video.indices] = conv(volume).reshape(x.shape[-1], -1).transpose(0, 1).to(out.dtype)
    return out


def video_spans(mm_token_type_ids: Tensor, video_grid_thw: Tensor | None, spatial_merge: int) -> list[VideoSpan]:
    """Locates each video's tokens (type 2) row by row, in the order of ``video_grid_thw``."""
    if video_grid_thw is None:
        return []
    grids = [(int(t), int(h) // spatial_merge, int(w) // spatial_merge) for t, h, w in video_grid_thw.tolist()]
    spans, next_grid = [], 0
    for row in range(mm_token_type_ids.shape[0]):
        positions = torch.nonzero(mm_token_type_ids[row] == 2).flatten()
        offset = 0
        while offset < positions.numel():
            if next_grid >= len(grids):
                raise ValueError("more video tokens in the prompt than video_grid_thw describes")
            grid = grids[next_grid]
            size = grid[0] * grid[1] * grid[2]
            if offset + size > positions.numel():
                raise ValueError(
                    f"row {row}: {positions.numel() - offset} video tokens left for a video of grid {grid} ({size} tokens)"
                )
            spans.append(VideoSpan(row, positions[offset : offset + size], grid))
            offset += size
            next_grid += 1
    if next_grid != len(grids):
        raise ValueError(f"video_grid_thw describes {len(grids)} videos but the prompt holds {next_grid}")
    return spans


def conv_frame_group(
    conv: nn.Conv3d, previous: Tensor | None, current: Tensor, following: Tensor | None, grid_hw: tuple[int, int]
) -> Tensor:
    """The conv output for one temporal group's tokens [B, h*w, C], from its neighbours' (pre-conv) tokens.

    Equals the middle frame of ``conv_video_tokens`` over the whole video: a missing neighbour (first or last
    group) is replaced by the group itself, which is what replicate padding in time does.
    """
    batch, tokens, channels = current.shape
    h, w = grid_hw
    frames = [current if f is None else f for f in (previous, current, following)]
    volume = torch.stack([f.transpose(1, 2).reshape(batch, channels, h, w) for f in frames], dim=2)
    volume = nn.functional.pad(volume, (1, 1, 1, 1, 0, 0), mode="replicate")
    out = nn.functional.conv3d(volume, conv.weight, groups=channels)
    return out.reshape(batch, channels, tokens).transpose(1, 2)
