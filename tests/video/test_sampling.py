import pytest

from spatial_ttt.video.sampling import num_sampled_frames, sample_indices


@pytest.mark.parametrize(
    ("total", "video_fps", "fps", "max_frames", "expected"),
    [
        (300, 30.0, 2.0, None, 20),  # 10 s at 2 fps
        (300, 30.0, 16.0, 128, 128),  # 160 wanted, capped (the VSI-Bench setting)
        (25, 10.0, 3.0, None, 6),  # 7.5 -> floor to even
        (7, 30.0, 2.0, None, 4),  # 0.47 -> min_frames 4
        (3, 30.0, 2.0, None, 2),  # min_frames 4 > 3 frames -> 3 -> floor to even
        (1, 30.0, 2.0, None, 2),  # single frame: repeated
        (100, 10.0, 16.0, 9, 8),  # cap floored to even
    ],
)
def test_fps_rule(total, video_fps, fps, max_frames, expected):
    assert num_sampled_frames(total, video_fps, fps=fps, max_frames=max_frames) == expected


def test_default_is_2fps():
    assert num_sampled_frames(300, 30.0) == 20


@pytest.mark.parametrize(
    ("num_frames", "total", "expected"),
    [(8, 100, 8), (5, 100, 4), (3, 100, 4), (7, 100, 8), (200, 50, 50), (9, 9, 8), (1, 100, 2)],
)
def test_count_rule(num_frames, total, expected):
    # round(n / 2) * 2 with Python's half-to-even, then capped by the frame count
    assert num_sampled_frames(total, 30.0, num_frames=num_frames) == expected


def test_count_capped_by_max_frames():
    assert num_sampled_frames(1000, 30.0, num_frames=300, max_frames=128) == 128


def test_exclusive_arguments():
    with pytest.raises(ValueError, match="either"):
        num_sampled_frames(10, 10.0, num_frames=4, fps=2.0)


@pytest.mark.parametrize(
    ("total", "n", "expected"),
    [
        (10, 4, [0, 3, 6, 9]),
        (30, 6, [0, 6, 12, 17, 23, 29]),  # 5.8, 11.6, 17.4, 23.2
        (6, 5, [0, 1, 2, 4, 5]),  # 2.5 rounds half to even
        (1, 2, [0, 0]),
    ],
)
def test_indices(total, n, expected):
    assert sample_indices(total, n) == expected
