"""Video files -> VideoClip with PyAV, keeping only the sampled frames in memory."""

from __future__ import annotations

from pathlib import Path

import av
import torch

from .clip import VideoClip, VideoError
from .frames import DEFAULT_SIZE, read_image_folder, resize_frames
from .sampling import CLIP_MAX_FRAMES, DEFAULT_MIN_FRAMES, num_sampled_frames, sample_indices


def _open(path: Path) -> av.container.InputContainer:
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as e:
        raise VideoError(f"cannot open video {path}: unsupported or corrupt file ({e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"no video stream in {path}")
    return container


def check_not_truncated(path: Path) -> None:
    """Refuse an MP4/MOV file cut short. Its top-level boxes declare their sizes; with the index (`moov`) at the
    front, FFmpeg would otherwise read a truncated file as far as it goes without a word."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8 or head[4:8] != b"ftyp":
            return  # not ISO base media: nothing to check here
        offset = 0
        while offset + 8 <= size:
            fh.seek(offset)
            header = fh.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8].decode("latin-1")
            if box_size == 1 and len(header) == 16:
                box_size = int.from_bytes(header[8:16], "big")
            elif box_size == 0:
                return  # the last box runs to the end of the file
            if box_size < 8:
                return  # not a box structure we can follow: leave it to the demuxer
            if offset + box_size > size:
                raise VideoError(f"truncated video {path}: its '{kind}' box needs {offset + box_size - size} more "
                                 f"bytes than the file has ({size} bytes); the file was cut short")
            offset += box_size


def probe(path: Path) -> tuple[int, float]:
    """(frame count, average fps) of the first video stream.

    The header's frame count is used when present; otherwise packets are counted by demuxing,
    which reads the file but decodes nothing.
    """
    check_not_truncated(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not rate:
            raise VideoError(f"cannot determine the frame rate of {path}")
        total = stream.frames
        if total <= 0:
            try:
                total = sum(1 for p in container.demux(stream) if p.size > 0)
            except av.FFmpegError as e:
                raise VideoError(f"corrupt video {path}: {e}") from e
    if total <= 0:
        raise VideoError(f"video has no frames: {path}")
    return total, float(rate)


def upright_rgb(frame: av.VideoFrame, source: str = "<frame>") -> torch.Tensor:
    """The frame as a player shows it: uint8 [H, W, 3] RGB with the stream's rotation applied.

    Phones store sideways or upside-down pictures plus a display matrix (`frame.rotation`: degrees
    counter-clockwise); the reference's readers (torchcodec, decord) return the rotated picture, so we do too,
    before any resize. Mirroring display matrices are not handled (no phone writes them).
    """
    rgb = torch.from_numpy(frame.to_ndarray(format="rgb24"))
    if frame.rotation % 90:
        raise VideoError(f"{source}: unsupported display rotation of {frame.rotation} degrees (only multiples of 90)")
    turns = frame.rotation // 90 % 4
    return torch.rot90(rgb, turns, dims=(0, 1)).contiguous() if turns else rgb


def _decode_indices(
    path: Path, wanted: set[int], size: tuple[int, int] | None
) -> tuple[dict[int, torch.Tensor], int]:
    """Decode in order, keeping (resized) frames whose index is wanted; returns them and how many were decoded."""
    kept: dict[int, torch.Tensor] = {}
    last = max(wanted)
    count = 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for frame in container.decode(stream):
                if count in wanted:
                    rgb = upright_rgb(frame, str(path))
                    kept[count] = resize_frames(rgb[None], size)[0] if size else rgb
                count += 1
                if count > last:
                    break
        except av.FFmpegError as e:
            raise VideoError(f"corrupt video {path} (failed after {count} frames): {e}") from e
    return kept, count


def read_video(
    path: str | Path,
    *,
    num_frames: int | None = None,
    fps: float | None = None,
    max_frames: int | None = CLIP_MAX_FRAMES,
    min_frames: int = DEFAULT_MIN_FRAMES,
    size: tuple[int, int] | None = DEFAULT_SIZE,
) -> VideoClip:
    """Decode and sample a video file (or a folder of images, read at 1 frame per second).

    Either `num_frames` (uniform, rounded to even) or `fps` (default 2.0; capped by max_frames,
    default 128, and floored to even) picks the frames; see sampling.py. Frames are resized to `size` = (H, W)
    (None keeps the source size). Timestamps are source index / source fps.
    """
    path = Path(path)
    if path.is_dir():
        return read_image_folder(
            path, num_frames=num_frames, fps=fps, max_frames=max_frames, min_frames=min_frames, size=size
        )
    if not path.is_file():
        raise VideoError(f"video file not found: {path}")
    total, video_fps = probe(path)
    for _ in range(2):
        n = num_sampled_frames(
            total, video_fps, num_frames=num_frames, fps=fps, max_frames=max_frames, min_frames=min_frames
        )
        indices = sample_indices(total, n)
        kept, decoded = _decode_indices(path, set(indices), size)
        if len(kept) == len(set(indices)):
            break
        if decoded == 0:
            raise VideoError(f"no frame could be decoded from {path}")
        total = decoded  # the header over-counted: sample again over the frames that really exist
    else:
        raise VideoError(f"frame count of {path} is inconsistent between decoding passes")
    return VideoClip.from_sampled(kept, indices, video_fps, str(path))
