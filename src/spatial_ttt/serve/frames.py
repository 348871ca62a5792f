"""Uploaded frames and video chunks -> uint8 [H, W, 3] frames of the session's size, or a ClientError naming the problem."""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..video import VideoError, resize_frames
from .errors import ClientError

MAX_IMAGE_PIXELS = 4096 * 4096  # a larger "frame" is an attack or a mistake, not a camera image


def check_time(value: float, what: str = "t") -> float:
    if not math.isfinite(value) or value < 0:
        raise ClientError(422, f"{what} must be a finite number of seconds >= 0, got {value}")
    return float(value)


def decode_image(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """A JPEG or PNG image -> uint8 [H, W, 3] resized to ``size`` (H, W)."""
    if not data:
        raise ClientError(400, "the frame is empty: send the JPEG or PNG bytes as the request body")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format not in ("JPEG", "PNG"):
            raise ClientError(415, f"the frame is a {image.format} image; send JPEG or PNG")
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise ClientError(413, f"the frame is {image.width}x{image.height} pixels; at most {MAX_IMAGE_PIXELS} are accepted")
        rgb = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise ClientError(400, f"the frame is not a decodable JPEG or PNG image ({len(data)} bytes no image decoder "
                          "recognises)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ClientError(400, f"the frame is not a decodable JPEG or PNG image ({err})") from None
    return resize_frames(torch.from_numpy(rgb.copy())[None], size)[0].numpy()


def decode_video(data: bytes, start: float, fps: float, size: tuple[int, int]) -> list[tuple[np.ndarray, float]]:
    """A video file's bytes -> its frames sampled at ``fps``, each with ``start`` + its time in the file."""
    from ..pipeline import iter_video_frames

    if not data:
        raise ClientError(400, "the video chunk is empty: send the video file's bytes as the request body")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chunk"
        path.write_bytes(data)
        try:
            frames = [(f.numpy(), start + t) for f, t in iter_video_frames(path, fps=fps, size=size)]
        except (VideoError, OSError, ValueError) as err:
            raise ClientError(400, f"the video chunk cannot be decoded ({err})") from None
    if not frames:
        raise ClientError(400, "the video chunk holds no frames")
    return frames
