"""Frame-level helpers: resizing, folders of images, and grouping a live frame stream."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from .clip import VideoClip, VideoError
from .sampling import CLIP_MAX_FRAMES, DEFAULT_MIN_FRAMES, FRAME_FACTOR, num_sampled_frames, sample_indices

DEFAULT_SIZE = (352, 480)  # (H, W) the released Spatial-TTT evaluation resizes every frame to
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})

FrameLike = np.ndarray | torch.Tensor | Image.Image


def to_frame(frame: FrameLike, source: str = "<frame>") -> torch.Tensor:
    """One RGB frame as uint8 [H, W, 3] (PIL images of any mode are converted to RGB)."""
    if isinstance(frame, Image.Image):
        frame = frame.convert("RGB")
    # np.array copies: the caller may reuse its buffer (cameras do), and PIL arrays are read-only
    t = frame if isinstance(frame, torch.Tensor) else torch.from_numpy(np.array(frame))
    if t.ndim != 3 or t.shape[-1] != 3 or t.dtype != torch.uint8:
        raise VideoError(f"{source}: expected a uint8 [H, W, 3] RGB frame, got {t.dtype} {tuple(t.shape)}")
    return t


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 [T, H, W, 3] frames to `size` (H, W), pixel for pixel as the reference does.

    qwen-vl-utils resizes with torchvision's tensor `resize(..., BICUBIC, antialias=True)`, which casts
    uint8 to float32, interpolates (bicubic, antialiased), clamps to [0, 255] and rounds back to uint8.
    torch's uint8 `F.interpolate` is a fixed-point approximation of it, several levels off on some pixels,
    so the cast is done here too.
    """
    if tuple(frames.shape[1:3]) == tuple(size):
        return frames
    chw = frames.permute(0, 3, 1, 2).to(torch.float32)
    out = F.interpolate(chw, size=tuple(size), mode="bicubic", antialias=True, align_corners=False)
    return out.clamp_(0, 255).round_().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _natural_key(path: Path) -> list:
    # "frame2" before "frame10": compare digit runs as numbers
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def list_images(folder: str | Path) -> list[Path]:
    """Image files of `folder` in natural order; VideoError if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VideoError(f"image folder not found: {folder}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=_natural_key)
    if not files:
        raise VideoError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder: {folder}")
    return files


def load_image(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as img:
            return to_frame(img, str(path))
    except (UnidentifiedImageError, OSError) as e:
        raise VideoError(f"cannot read image {path}: {e}") from e


IMAGE_FOLDER_RATE = 1.0  # an image folder is a video shot at 1 frame per second (file readers and streams alike)


def read_image_folder(
    folder: str | Path,
    *,
    frame_rate: float = IMAGE_FOLDER_RATE,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = CLIP_MAX_FRAMES,
    min_frames: int = DEFAULT_MIN_FRAMES,
    size: tuple[int, int] | None = DEFAULT_SIZE,
) -> VideoClip:
    """A folder of images read as a video shot at `frame_rate` frames per second.

    Sampling follows `read_video` (same rules, same defaults); only the sampled images are opened.
    Timestamps are index / frame_rate.
    """
    files = list_images(folder)
    n = num_sampled_frames(
        len(files), frame_rate, num_frames=num_frames, fps=fps, max_frames=max_frames, min_frames=min_frames
    )
    indices = sample_indices(len(files), n)
    loaded: dict[int, torch.Tensor] = {}
    for i in sorted(set(indices)):
        frame = load_image(files[i])
        loaded[i] = resize_frames(frame[None], size)[0] if size else frame
    shapes = {tuple(f.shape) for f in loaded.values()}
    if len(shapes) > 1:
        raise VideoError(f"images in {folder} have different sizes {sorted(shapes)}; pass size=(H, W)")
    return VideoClip.from_sampled(loaded, indices, frame_rate, str(folder))


@dataclass(frozen=True)
class FrameGroup:
    """A run of consecutive live frames: uint8 [T, H, W, 3] with T even, and their times in seconds."""

    frames: torch.Tensor
    timestamps: tuple[float, ...]


def group_frames(
    frames: Iterable[FrameLike | tuple[FrameLike, float]],
    *,
    group_size: int = FRAME_FACTOR,
    fps: float | None = None,
    size: tuple[int, int] | None = DEFAULT_SIZE,
) -> Iterator[FrameGroup]:
    """Group a live stream of frames into fixed-size, even-sized groups as they arrive.

    Items are frames, or (frame, seconds) pairs; bare frames get timestamp i / fps (fps required).
    Each frame is resized as it arrives so only one group is held in memory. A final odd group is
    padded by repeating its last frame (Qwen3-VL's own padding rule); a final short even group is
    yielded as it is.
    """
    if group_size < FRAME_FACTOR or group_size % FRAME_FACTOR:
        raise ValueError(f"group_size must be a positive multiple of {FRAME_FACTOR}, got {group_size}")
    buf: list[torch.Tensor] = []
    times: list[float] = []
    for i, item in enumerate(frames):
        if isinstance(item, tuple):
            frame, t = item
        elif fps is None:
            raise ValueError("bare frames need fps= to get timestamps; or yield (frame, seconds) pairs")
        else:
            frame, t = item, i / fps
        f = to_frame(frame, f"<live frame {i}>")
        buf.append(resize_frames(f[None], size)[0] if size else f)
        times.append(float(t))
        if len(buf) == group_size:
            yield FrameGroup(torch.stack(buf), tuple(times))
            buf, times = [], []
    if buf:
        if len(buf) % FRAME_FACTOR:
            buf.append(buf[-1])
            times.append(times[-1])
        yield FrameGroup(torch.stack(buf), tuple(times))
