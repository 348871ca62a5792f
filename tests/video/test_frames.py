import numpy as np
import pytest
import torch
from PIL import Image

from spatial_ttt.video import VideoError, group_frames, read_image_folder, read_video, resize_frames


def grey(v: int, h: int = 32, w: int = 48) -> np.ndarray:
    return np.full((h, w, 3), v, dtype=np.uint8)


@pytest.fixture
def image_folder(tmp_path):
    # names chosen so that plain string sorting would give 1, 10, 11, 2, ...
    for i in range(1, 13):
        Image.fromarray(grey(10 * i)).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_folder_natural_order(image_folder):
    clip = read_image_folder(image_folder, num_frames=12, size=None)
    assert clip.frames.float().mean(dim=(1, 2, 3)).tolist() == [10.0 * i for i in range(1, 13)]
    assert clip.timestamps == tuple(float(i) for i in range(12))  # 1 image per second by default


def test_folder_sampling_and_rate(image_folder):
    clip = read_image_folder(image_folder, frame_rate=4.0, fps=2.0, size=(64, 96))
    # 12 images at 4 fps = 3 s; 2 fps -> 6 -> indices linspace(0, 11, 6) = 0, 2.2, 4.4, 6.6, 8.8, 11
    assert clip.frame_indices == (0, 2, 4, 7, 9, 11)
    assert clip.timestamps == pytest.approx((0.0, 0.5, 1.0, 1.75, 2.25, 2.75))
    assert clip.frames.shape == (6, 64, 96, 3)


def test_read_video_accepts_folder(image_folder):
    assert read_video(image_folder, num_frames=4, size=None).frame_indices == (0, 4, 7, 11)


def test_empty_folder(tmp_path):
    (tmp_path / "readme.md").write_text("no images")
    with pytest.raises(VideoError, match=str(tmp_path)):
        read_image_folder(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(VideoError, match="gone"):
        read_image_folder(tmp_path / "gone")


def test_corrupt_image(tmp_path):
    Image.fromarray(grey(1)).save(tmp_path / "a1.png")
    (tmp_path / "a2.png").write_bytes(b"not a png")
    with pytest.raises(VideoError, match="a2.png"):
        read_image_folder(tmp_path, num_frames=2)


def test_resize_frames():
    frames = torch.from_numpy(np.stack([grey(50, 100, 120), grey(200, 100, 120)]))
    out = resize_frames(frames, (352, 480))
    assert out.shape == (2, 352, 480, 3) and out.dtype == torch.uint8
    assert out[0].unique().tolist() == [50] and out[1].unique().tolist() == [200]
    assert resize_frames(out, (352, 480)) is out  # already at size: untouched


def test_group_frames_pairs_with_padding():
    groups = list(group_frames((grey(i) for i in range(5)), fps=2.0, size=None))
    assert [g.frames.shape[0] for g in groups] == [2, 2, 2]
    assert [g.timestamps for g in groups] == [(0.0, 0.5), (1.0, 1.5), (2.0, 2.0)]
    assert groups[-1].frames[1].float().mean() == 4  # odd tail: last frame repeated


def test_group_frames_larger_groups_and_given_times():
    stream = [(grey(i), 0.1 * i) for i in range(6)]
    groups = list(group_frames(stream, group_size=4, size=(64, 96)))
    assert [tuple(g.frames.shape) for g in groups] == [(4, 64, 96, 3), (2, 64, 96, 3)]
    assert groups[1].timestamps == pytest.approx((0.4, 0.5))


def test_group_frames_is_lazy():
    def source():
        yield grey(0)
        yield grey(1)
        raise RuntimeError("camera disconnected")

    it = group_frames(source(), fps=1.0, size=None)
    assert next(it).frames.shape[0] == 2  # the first group arrives before the source fails
    with pytest.raises(RuntimeError):
        next(it)


def test_group_frames_arguments():
    with pytest.raises(ValueError, match="fps"):
        list(group_frames([grey(0)], size=None))
    with pytest.raises(ValueError, match="multiple"):
        list(group_frames([grey(0)], group_size=3, fps=1.0))
    with pytest.raises(VideoError, match="live frame 0"):
        list(group_frames([np.zeros((4, 4), dtype=np.uint8)], fps=1.0))


def test_resize_is_the_reference_float32_kernel():
    """qwen-vl-utils resizes uint8 frames with torchvision's tensor resize: float32 bicubic with antialiasing,
    clamped and rounded. Pillow's float ("F") resampling is the same antialiased bicubic (a = -0.5), computed
    independently; torch's uint8 fixed-point path differs on this frame, so the test tells the kernels apart."""
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    got = resize_frames(torch.from_numpy(frame)[None], (96, 160))[0].numpy()
    want = np.stack([np.asarray(Image.fromarray(frame[..., c].astype(np.float32), mode="F")
                                .resize((160, 96), Image.BICUBIC)) for c in range(3)], axis=-1)
    err = np.abs(got - np.clip(want, 0, 255))  # got is the reference value rounded (1e-3: float32 vs PIL's sums)
    assert err.max() <= 0.5 + 1e-3
    chw = torch.from_numpy(frame).permute(2, 0, 1)[None]
    uint8_path = torch.nn.functional.interpolate(chw, size=(96, 160), mode="bicubic", antialias=True)
    diff = (uint8_path[0].permute(1, 2, 0).int() - torch.from_numpy(got).int()).abs()
    assert diff.max() >= 5 and (diff > 0).float().mean() > 0.1
