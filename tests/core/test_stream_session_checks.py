"""StreamSession refuses time going backwards and answers like the pipeline (issue 11)."""

import math

import numpy as np
import pytest

from spatial_ttt.streaming import StreamError, StreamSession
from spatial_ttt.tiny import tiny_model


def frames(count):
    return np.random.default_rng(0).integers(0, 255, size=(count, 64, 64, 3), dtype=np.uint8)


def test_timestamps_must_not_go_backwards(processor, tmp_path):
    session = tiny_model(use_muon=False).stream(processor)
    session.observe(frames(2), [4.0, 4.5])
    with pytest.raises(StreamError, match=r"timestamps go backwards: 1 s after 4.5 s"):
        session.observe(frames(2), [1.0, 1.5])
    with pytest.raises(StreamError, match=r"timestamps go backwards: 5 s after 6 s"):
        session.observe(frames(2), [6.0, 5.0])
    with pytest.raises(StreamError, match="finite"):
        session.observe(frames(2), [7.0, math.nan])
    assert session.num_frames == 2  # refused pieces change nothing
    session.observe(frames(2), [4.5, 5.0])  # equal to the last time is fine (a repeated padding frame)
    path = tmp_path / "s.st"
    session.save(path)
    resumed = StreamSession.load(path, session.model, processor)
    with pytest.raises(StreamError, match="backwards"):  # the clock survives save / load
        resumed.observe(frames(2), [2.0, 2.5])


def test_ask_strips_the_answer_like_the_pipeline(processor):
    class Spaced:
        """The tiny processor, decoding with the leading space a BPE answer usually has."""

        def __getattr__(self, name):
            return getattr(processor, name)

        def decode(self, ids):
            return " " + processor.decode(ids) + " "

    session = tiny_model(use_muon=False).stream(Spaced())
    session.observe(frames(2), [0.0, 0.5])
    answer = session.ask("How many?", max_new_tokens=3, stop_token_ids=[])
    assert answer == answer.strip() and answer != ""
