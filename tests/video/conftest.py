"""Shared fixtures: small videos written with PyAV (the tiny processor comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest



def level(i: int) -> int:
    """Grey level of frame i in the test videos (distinct for i < 32, far apart for lossy codecs)."""
    return 8 * i % 256


def write_video(path: Path, n: int, *, rate: int = 10, size: tuple[int, int] = (64, 96), codec: str = "mpeg4") -> Path:
    """n solid-grey frames (frame i has level(i)), H x W = size."""
    h, w = size
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = h, w
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "1"}
        for i in range(n):
            img = np.full((h, w, 3), level(i), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def video30(tmp_path_factory) -> Path:
    """30 frames at 10 fps (3 s), 64x96, MPEG-4 in MP4."""
    return write_video(tmp_path_factory.mktemp("vid") / "grey30.mp4", 30)


