"""The same frames encode to the same mp4 bytes (issue 11: the synthetic dataset test was flaky because x264's
macroblock-tree rate control made small videos differ from run to run, decoded pixels by up to 37/255)."""

import hashlib

import numpy as np

from spatial_ttt.data.render import read_video, write_video


def _frames() -> list[np.ndarray]:
    yy, xx = np.mgrid[0:64, 0:96]
    out = []
    for i in range(16):  # moving shapes on a gradient: motion search and rate control have work to do
        img = np.stack([(xx * 2 + i * 7) % 256, (yy * 3) % 256, (xx + yy + i * 11) % 256], -1).astype(np.uint8)
        img[20:40, 5 + 4 * i : 25 + 4 * i] = (220, 40, 40)
        out.append(img)
    return out


def test_same_frames_same_bytes(tmp_path):
    frames = _frames()
    digests = set()
    for k in range(12):  # before the fix: 5 different files in 12 runs
        write_video(frames, tmp_path / f"v{k}.mp4", fps=10.0)
        digests.add(hashlib.sha256((tmp_path / f"v{k}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1
    decoded = read_video(tmp_path / "v0.mp4")
    assert len(decoded) == 16
    assert np.abs(decoded[5].astype(int) - frames[5]).mean() < 3  # still a faithful encoding
