"""The decoded-video container shared by every reader, and the one error type they raise."""

from __future__ import annotations

from dataclasses import dataclass

import torch


class VideoError(ValueError):
    """A video or image source could not be read; the message always names the file or folder."""


@dataclass(frozen=True)
class VideoClip:
    """Sampled, resized frames of one video.

    frames: uint8 [T, H, W, 3] RGB, T even (Qwen3-VL's temporal patch is 2 frames).
    timestamps: seconds of each frame, len T (source frame index / source fps for files).
    frame_indices: source frame index of each frame (None for live frames).
    video_fps: frame rate of the source (None when unknown, e.g. live frames).
    source: the path or a label, for messages.
    """

    frames: torch.Tensor
    timestamps: tuple[float, ...]
    frame_indices: tuple[int, ...] | None = None
    video_fps: float | None = None
    source: str = "<frames>"

    def __post_init__(self) -> None:
        f = self.frames
        if f.dtype != torch.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(f"{self.source}: frames must be uint8 [T, H, W, 3], got {f.dtype} {tuple(f.shape)}")
        if len(self.timestamps) != f.shape[0]:
            raise ValueError(f"{self.source}: {f.shape[0]} frames but {len(self.timestamps)} timestamps")

    @classmethod
    def from_sampled(cls, frames: dict[int, torch.Tensor], indices: list[int], rate: float, source: str) -> "VideoClip":
        """A clip of the source frames at ``indices`` (``frames`` maps source index -> frame), timed at ``rate``."""
        return cls(
            frames=torch.stack([frames[i] for i in indices]),
            timestamps=tuple(i / rate for i in indices),
            frame_indices=tuple(indices),
            video_fps=rate,
            source=source,
        )

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])
