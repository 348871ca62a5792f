"""Spatial-predictive depthwise 3D convolution over each video's tokens (text tokens pass through).

One stencil (:func:`depthwise_conv3`) serves the one-shot prompt (a whole video) and streaming (one frame group
between its neighbours). It works on the tokens as they are (channels last: a video's rows in raster order
are a [T, H, W, C] volume), pads by clamping indices (replicate padding) and sums the 27 taps in fp32. It is the
reference: on CUDA the TTT layer runs it through its kernel's ``torch.compile`` when autograd needs it, else as the
Triton kernel of the same signature (:mod:`spatial_ttt.ops.conv_triton`; ``TTTAttention.conv_stencil`` chooses);
the module path (gather, transpose to [C, T, H, W], Conv3d) measured ~4 ms per conv at 44k tokens on an H100.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class VideoSpan:
    """One video's tokens in a batch row: their sequence indices in raster (t, h, w) order and grid."""

    row: int
    indices: Tensor  # [t*h*w] positions within the row
    grid: tuple[int, int, int]  # (t, h, w) in LLM tokens (after the 2x2 spatial merge)


def make_conv(channels: int) -> nn.Conv3d:
    """Depthwise 3x3x3, replicate padding, no bias; initialised as the identity (Dirac). Holds the weight
    (``conv_q.weight`` etc. in checkpoints); the computation is :func:`depthwise_conv3`."""
    conv = nn.Conv3d(channels, channels, 3, padding=1, padding_mode="replicate", groups=channels, bias=False)
    init_identity(conv)
    return conv


def init_identity(conv: nn.Conv3d) -> None:
    nn.init.dirac_(conv.weight, groups=conv.groups)  # groups: every depthwise channel passes itself


def depthwise_conv3(frames: Tensor, weight: Tensor) -> Tensor:
    """frames [..., T+2, H, W, C], already padded in time (the neighbours of the first and last frame), and a
    depthwise kernel [C, 1, 3, 3, 3] -> [..., T, H, W, C]: Conv3d(groups=C, padding=1, replicate) over H, W."""
    t, h, w = frames.shape[-4] - 2, frames.shape[-3], frames.shape[-2]
    rows = torch.arange(-1, h + 1, device=frames.device).clamp(0, h - 1)
    cols = torch.arange(-1, w + 1, device=frames.device).clamp(0, w - 1)
    padded = frames.index_select(-3, rows).index_select(-2, cols).float()
    kernel = weight[:, 0].float()
    out = None
    for a in range(3):
        for b in range(3):
            for c in range(3):
                term = padded[..., a : a + t, b : b + h, c : c + w, :] * kernel[:, a, b, c]
                out = term if out is None else out + term
    return out.to(frames.dtype)


def conv_video_tokens(
    x: Tensor, conv: nn.Conv3d, videos: list[VideoSpan], stencil: Callable[[Tensor, Tensor], Tensor] = depthwise_conv3
) -> Tensor:
    """Applies ``conv`` to every video's tokens of x [B, S, C] as a [t, h, w, C] volume (replicate padding)."""
    if not videos:
        return x
    out = x.clone()
    for video in videos:
        t, h, w = video.grid
        indices = video.indices.to(x.device)
        volume = x[video.row].index_select(0, indices).view(t, h, w, -1)
        frames = torch.arange(-1, t + 1, device=x.device).clamp(0, t - 1)  # replicate padding in time
        result = stencil(volume.index_select(0, frames), conv.weight)
        out[video.row] = out[video.row].index_copy(0, indices, result.reshape(t * h * w, -1).to(out.dtype))  # autocast: the conv may run in bf16
    return out


def conv_token_groups(
    tokens: Tensor,
    starts: Tensor,
    previous: Tensor | None,
    following: Tensor | None,
    grid_hw: tuple[int, int],
    weight: Tensor,
    stencil: Callable[[Tensor, Tensor], Tensor] = depthwise_conv3,
) -> Tensor:
    """tokens [B, L, C] holding n consecutive frame groups of a video at rows ``starts`` [n] (h*w rows each, on the
    tokens' device), with other rows (text) between them -> the same with each group's rows replaced by its conv
    output between its neighbours (``previous`` / ``following`` [B, h*w, C], the groups just before and after these
    n; None: the video's first or last, replicate padding), as :func:`conv_frame_groups`. The streaming engine's
    form; :func:`spatial_ttt.ops.conv_triton.conv_token_groups_triton` computes it in place of the groups' rows."""
    batch, _, channels = tokens.shape
    size = grid_hw[0] * grid_hw[1]
    rows = (starts[:, None] + torch.arange(size, device=tokens.device)).flatten()
    groups = tokens.index_select(1, rows).view(batch, starts.numel(), size, channels)
    out = conv_frame_groups(weight, previous, groups, following, grid_hw, stencil)
    return tokens.clone().index_copy_(1, rows, out.flatten(1, 2))


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


def conv_frame_groups(
    weight: Tensor,
    previous: Tensor | None,
    groups: Tensor,
    following: Tensor | None,
    grid_hw: tuple[int, int],
    stencil: Callable[[Tensor, Tensor], Tensor] = depthwise_conv3,
) -> Tensor:
    """The conv output for n consecutive temporal groups' tokens [B, n, h*w, C] of a video, from their (pre-conv)
    tokens and those of the groups just before and after them ([B, h*w, C] each), in one stencil call.

    Equals those groups' rows of ``conv_video_tokens`` over the whole video: a missing neighbour (the video's first
    or last group) is replaced by the end group itself, which is what replicate padding in time does.
    """
    batch, n, tokens, channels = groups.shape
    before = groups[:, :1] if previous is None else previous[:, None]
    after = groups[:, -1:] if following is None else following[:, None]
    frames = torch.cat([before, groups, after], dim=1)
    return stencil(frames.view(batch, n + 2, *grid_hw, channels), weight).view(batch, n, tokens, channels)
