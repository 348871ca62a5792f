"""A stream fed with frames through the Qwen3-VL processor answers like the one-shot prompt."""

import numpy as np
import pytest
import torch

from spatial_ttt.streaming import StreamError
from spatial_ttt.tiny import tiny_model
from spatial_ttt.video import VideoClip


def frames(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(count, 64, 64, 3), dtype=np.uint8)


def test_frames_in_pieces_answer_like_the_one_shot_prompt(processor):
    model = tiny_model(use_muon=False, lact_chunk_size=16)
    video = frames(8)
    times = [i * 0.5 for i in range(8)]
    session = model.stream(processor)
    for a, b in ((0, 2), (2, 6), (6, 8)):
        session.observe(video[a:b], times[a:b])
    answer = session.ask("How many chairs?", max_new_tokens=6, stop_token_ids=[])
    clip = VideoClip(frames=torch.from_numpy(video), timestamps=times, frame_indices=list(range(8)), video_fps=2.0, source="test")
    inputs = processor(clip, "How many chairs?")
    generated = model.generate(**inputs, max_new_tokens=6)
    assert answer == processor.decode(generated[0, inputs["input_ids"].shape[1]:]).strip()
    assert session.num_frames == 8


def test_stream_input_errors(processor):
    session = tiny_model().stream(processor)
    with pytest.raises(StreamError, match="timestamps"):
        session.observe(frames(2))
    with pytest.raises(StreamError, match="2 streams"):
        session.observe([frames(2), frames(2)], [0.0, 0.5])
    with pytest.raises(StreamError, match="no processor"):
        tiny_model().stream().ask("hi")
