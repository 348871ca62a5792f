from pathlib import Path

import av
import numpy as np
import pytest
import torch

from spatial_ttt.video import VideoError, read_video
from spatial_ttt.video.decode import probe

from .conftest import level, write_video


def assert_levels(frames: torch.Tensor, indices: list[int], tol: int = 4) -> None:
    got = frames.float().mean(dim=(1, 2, 3))
    want = torch.tensor([float(level(i)) for i in indices])
    assert torch.allclose(got, want, atol=tol), (got, want)


def test_probe(video30):
    assert probe(video30) == (30, 10.0)


def test_fps_sampling_counts_indices_timestamps(video30):
    clip = read_video(video30, fps=2.0, size=None)
    # 30 frames / 10 fps * 2 fps = 6 frames; linspace(0, 29, 6) rounded
    assert clip.frame_indices == (0, 6, 12, 17, 23, 29)
    assert clip.timestamps == pytest.approx((0.0, 0.6, 1.2, 1.7, 2.3, 2.9))
    assert clip.video_fps == 10.0
    assert clip.frames.shape == (6, 64, 96, 3) and clip.frames.dtype == torch.uint8
    assert_levels(clip.frames, list(clip.frame_indices))


def test_num_frames_sampling(video30):
    clip = read_video(video30, num_frames=4, size=None)
    assert clip.frame_indices == (0, 10, 19, 29)
    assert_levels(clip.frames, [0, 10, 19, 29])


def test_max_frames_caps_fps(video30):
    clip = read_video(video30, fps=16.0, max_frames=8, size=None)
    assert clip.num_frames == 8


def test_resize_to_352x480(video30):
    clip = read_video(video30, num_frames=2)
    assert clip.frames.shape == (2, 352, 480, 3)
    assert clip.size == (352, 480)
    assert_levels(clip.frames, [0, 29])  # a solid colour stays solid through bicubic resizing


def test_lossless_exact_colours(tmp_path):
    path = write_video(tmp_path / "exact.mkv", 9, rate=3, codec="ffv1")
    clip = read_video(path, num_frames=4, size=None)
    assert clip.frame_indices == (0, 3, 5, 8)
    assert clip.timestamps == pytest.approx((0.0, 1.0, 5 / 3, 8 / 3))
    assert_levels(clip.frames, [0, 3, 5, 8], tol=1)


def test_header_without_frame_count(tmp_path):
    # MPEG-TS carries no frame count in its header: frames are counted by demuxing
    path = write_video(tmp_path / "stream.ts", 12, rate=4)
    assert probe(path) == (12, 4.0)
    assert read_video(path, fps=1.0, size=None).frame_indices == (0, 4, 7, 11)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(VideoError, match="nope.mp4"):
        read_video(missing)


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="empty.mp4"):
        read_video(empty)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="corrupt.mp4"):
        read_video(bad)


def test_truncated_file(video30, tmp_path):
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(Path(video30).read_bytes()[:300])
    with pytest.raises(VideoError, match="truncated.mp4"):
        read_video(cut)


def test_unsupported_text_file(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("this is not a video\n" * 20)
    with pytest.raises(VideoError, match="notes.txt"):
        read_video(txt)


def test_audio_only_file(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), dtype=np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(VideoError, match="no video stream in .*sound.wav"):
        read_video(path)


def test_default_cap_is_128_frames(tmp_path):
    path = write_video(tmp_path / "long.mp4", 140, rate=1, size=(32, 32))
    clip = read_video(path, size=None)  # 2 fps over 140 s wants 280 frames
    assert clip.num_frames == 128
    assert clip.frame_indices[:3] == (0, 1, 2) and clip.frame_indices[-1] == 139


def _write_rotated(path: Path, ccw_degrees: int) -> Path:
    """4 frames of 32 x 64 (H x W), black with a white 8 x 8 square in the top-left corner, tagged with a
    display rotation (counter-clockwise degrees, as phones write it)."""
    img = np.zeros((32, 64, 3), np.uint8)
    img[:8, :8] = 255
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264rgb", rate=10, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 64, 32, "rgb24"
        stream.set_display_rotation(ccw_degrees)
        for _ in range(4):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())
    return path


# where the top-left marker is shown after rotating the picture counter-clockwise by the tag, and the shown (H, W)
@pytest.mark.parametrize("ccw, corner, shape", [
    (0, (slice(0, 8), slice(0, 8)), (32, 64)),
    (90, (slice(56, 64), slice(0, 8)), (64, 32)),     # ccw quarter turn: top-left goes to bottom-left
    (180, (slice(24, 32), slice(56, 64)), (32, 64)),  # half turn: bottom-right
    (270, (slice(0, 8), slice(24, 32)), (64, 32)),    # = 90 clockwise (a phone's "rotate 90"): top-right
])
def test_rotation_tag_is_applied(tmp_path, ccw, corner, shape):
    from spatial_ttt.pipeline import iter_video_frames

    path = _write_rotated(tmp_path / f"rot{ccw}.mp4", ccw)
    want = np.zeros((*shape, 3), np.uint8)
    want[corner] = 255
    frames = read_video(path, num_frames=2, size=None).frames
    assert frames.shape == (2, *shape, 3)
    np.testing.assert_array_equal(frames[0].numpy(), want)
    streamed = [f for f, _ in iter_video_frames(path, fps=10, size=None)]  # the `stream` command's reader
    assert len(streamed) == 4
    np.testing.assert_array_equal(streamed[0].numpy(), want)
    # rotation comes before the resize: a portrait picture is resized as portrait
    small = read_video(path, num_frames=2, size=(shape[0] // 2, shape[1] // 2)).frames[0].float().mean(-1)
    r, c = corner
    assert small[r.start // 2:r.stop // 2, c.start // 2:c.stop // 2].min() > 200
