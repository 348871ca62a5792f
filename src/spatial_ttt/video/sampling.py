"""Which source frames to keep: qwen-vl-utils' `smart_nframes` rule plus uniform index spacing.

qwen-vl-utils (Qwen3-VL branch, `vision_process.py`), with FRAME_FACTOR = 2:
- `nframes` given: round(nframes / 2) * 2 (Python round, half to even).
- `fps` given (default 2.0): n = total / video_fps * fps, clamped to
  [ceil_even(min_frames=4), floor_even(max_frames)] and to total, then floor_even(n).
- indices = linspace(0, total - 1, n).round() (torch round, half to even).
Our additions (documented in docs/video.md): a requested count is also capped by max_frames and by
the frame count (qwen-vl-utils raises instead), and a 1-frame source gives [0, 0] (the repeated frame
Qwen3-VL's patchifier would add anyway) instead of an error.
"""

from __future__ import annotations

import math

import torch

FRAME_FACTOR = 2  # Qwen3-VL temporal patch size
DEFAULT_FPS = 2.0
DEFAULT_MIN_FRAMES = 4
DEFAULT_MAX_FRAMES = 768  # qwen-vl-utils' cap when none is given
CLIP_MAX_FRAMES = 128  # the readers' default: Spatial-TTT was trained and evaluated on up to 128 frames


def round_even(n: float) -> int:
    return round(n / FRAME_FACTOR) * FRAME_FACTOR


def ceil_even(n: float) -> int:
    return math.ceil(n / FRAME_FACTOR) * FRAME_FACTOR


def floor_even(n: float) -> int:
    return math.floor(n / FRAME_FACTOR) * FRAME_FACTOR


def num_sampled_frames(
    total_frames: int,
    video_fps: float,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = None,
    min_frames: int = DEFAULT_MIN_FRAMES,
) -> int:
    """Number of frames to sample (always even, >= 2) from a source of `total_frames` at `video_fps`."""
    if total_frames < 1:
        raise ValueError("total_frames must be >= 1")
    if num_frames is not None and fps is not None:
        raise ValueError("pass either num_frames or fps, not both")
    cap = floor_even(min(max_frames if max_frames is not None else DEFAULT_MAX_FRAMES, total_frames))
    if num_frames is not None:
        if num_frames < 1:
            raise ValueError("num_frames must be >= 1")
        n = min(round_even(num_frames), cap)
    else:
        fps = DEFAULT_FPS if fps is None else fps
        if fps <= 0 or video_fps <= 0:
            raise ValueError("fps and video_fps must be positive")
        n = total_frames / video_fps * fps
        n = floor_even(min(max(n, ceil_even(min_frames)), cap, total_frames))
    return max(n, FRAME_FACTOR)


def sample_indices(total_frames: int, n: int) -> list[int]:
    """`n` source indices spread uniformly over [0, total_frames - 1], as qwen-vl-utils picks them."""
    return torch.linspace(0, total_frames - 1, n).round().long().tolist()
