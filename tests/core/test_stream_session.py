"""The session layer of a stream: stream files (versioned, loaded onto the model's device), snapshots that cannot
outlive their source, kept answers in a batch, and odd frames that leave the memory untouched."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from spatial_ttt.session_state import (
    FORMAT_VERSION,
    StaleSnapshotError,
    StreamError,
    flatten,
    load_stream,
    snapshot,
)
from spatial_ttt.streaming import StreamSession, feed, final_logits, segments_from_tokens
from spatial_ttt.tiny import tiny_model

from .helpers import video_prompt
from .test_streaming import pieces

TURN_END = [506, 198, 505, 393, 268, 198]  # the tiny processor's "<|im_end|>\n<|im_start|>user\n"


def frames(count, seed=0):
    return np.random.default_rng(seed).integers(0, 255, size=(count, 64, 64, 3), dtype=np.uint8)


def tensors_of(stream):
    return flatten(stream)[0]


def assert_same_memory(a, b, atol=0.0):
    """Same model state, and the same tokens queued in each layer (however they are cut into segments)."""
    assert a.model.num_tokens == b.model.num_tokens
    ta, tb = ({k: t for k, t in tensors_of(s).items() if ".q" not in k} for s in (a, b))
    assert ta.keys() == tb.keys()
    for key in ta:
        torch.testing.assert_close(ta[key], tb[key], atol=atol, rtol=0, msg=key)
    for qa, qb in zip(a.queues, b.queues):
        if qa or qb:
            ha, hb = (torch.cat([seg.hidden for seg in q], 1) for q in (qa, qb))
            torch.testing.assert_close(ha, hb, atol=atol, rtol=0)


# -- stream files ------------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path, processor):
    """A session with frame groups still queued in conv layers and an odd frame pending, saved."""
    model = tiny_model(use_muon=False, lact_chunk_size=16)
    session = model.stream(processor)
    session.observe(frames(5), [0.5 * i for i in range(5)])
    path = tmp_path / "s.safetensors"
    session.save(path)
    return model, session, path


def test_stream_file_round_trip_is_exact_and_keeps_the_pending_frame(saved, processor):
    model, session, path = saved
    loaded = StreamSession.load(path, model, processor)
    assert_same_memory(loaded.stream, session.stream)
    assert any(loaded.stream.queues)
    assert loaded.num_frames == 5 and loaded.pending.timestamp == 2.0
    assert np.array_equal(loaded.pending.frames[0], frames(5)[4:])
    assert loaded.ask("How many?", max_new_tokens=4, stop_token_ids=[]) == session.ask(
        "How many?", max_new_tokens=4, stop_token_ids=[])


def test_stream_file_loads_onto_the_given_device(saved):
    _, _, path = saved
    stream, meta, extra = load_stream(path, "meta")  # no GPU here: 'meta' shows where every tensor goes
    devices = {t.device.type for t in tensors_of(stream).values() if t is not stream.model.next_position}
    assert devices == {"meta"}
    assert stream.model.next_position.device.type == "cpu"  # rope positions are computed on the CPU
    assert extra["pending_frames"].device.type == "cpu" and meta["format"] == FORMAT_VERSION


@pytest.mark.parametrize(("version", "message"), [(99, "stream file of format 99"), (None, "unversioned early format")])
def test_stream_file_of_another_format_is_refused(saved, version, message):
    model, _, path = saved
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["spatial_ttt_stream"])
    meta.pop("format")
    if version is not None:
        meta["format"] = version
    save_file(load_file(path), str(path), metadata={"spatial_ttt_stream": json.dumps(meta)})
    with pytest.raises(StreamError, match=f"{message}; this version of spatial-ttt reads format 1 only"):
        StreamSession.load(path, model)


# -- snapshots ---------------------------------------------------------------------------------------------------


def test_a_snapshot_cannot_be_used_after_its_source_advanced():
    model = tiny_model(use_muon=False, lact_chunk_size=10)
    inputs = video_prompt(frames_groups=4, grid_hw=4)
    video, suffix = pieces(inputs, [2], groups=4)
    session = StreamSession(model)
    for piece in video[:2]:
        session.observe_tokens(**piece)
    source = session.stream
    early = snapshot(source)
    session.observe_tokens(**video[2])
    with pytest.raises(StaleSnapshotError, match="taken before its stream advanced"):
        feed(model, early, segments_from_tokens(model, early, suffix), flush=True)

    first, second = snapshot(source), snapshot(source)
    expected = final_logits(model, feed(model, first, segments_from_tokens(model, first, suffix), flush=True))
    feed(model, second, segments_from_tokens(model, second, suffix), flush=True)  # overwrites first's tokens
    with pytest.raises(StaleSnapshotError, match="another snapshot of the same stream"):
        feed(model, first, segments_from_tokens(model, first, suffix[:, :1]))
    with pytest.raises(StreamError, match="cannot snapshot a snapshot"):
        snapshot(second)
    third = snapshot(source)  # a fresh snapshot is fine, and answers as the first did
    got = final_logits(model, feed(model, third, segments_from_tokens(model, third, suffix), flush=True))
    torch.testing.assert_close(got, expected, atol=0, rtol=0)


# -- kept answers in a batch ---------------------------------------------------------------------------------


def kept_then_follow_up(model, inputs, suffix, stop):
    """Prefix + 2 groups, a kept question, 2 more groups; the follow-up's logits per stream and the kept answers."""
    batch = inputs["input_ids"].shape[0]
    video, _ = pieces(inputs, [2], groups=4)
    session = StreamSession(model, batch_size=batch)
    for piece in video[:2]:
        session.observe_tokens(**piece)
    answers = session.ask_tokens(suffix, max_new_tokens=6, keep=True, turn_end_ids=TURN_END, stop_token_ids=[stop])
    session.observe_tokens(**video[2])
    logits = []
    for lane in session.lanes:
        s = snapshot(lane)
        logits.append(final_logits(model, feed(model, s, segments_from_tokens(model, s, suffix[:1]), flush=True)))
    return answers, torch.cat(logits)


def test_kept_answers_in_a_batch_equal_each_stream_alone():
    model = tiny_model(use_muon=False, lact_chunk_size=10)
    inputs = video_prompt(frames_groups=4, grid_hw=4, batch=2)
    _, suffix = pieces(inputs, [2], groups=4)
    rows = [{k: v[r : r + 1] for k, v in inputs.items() if k != "pixel_values_videos"} for r in range(2)]
    for r in range(2):
        rows[r]["pixel_values_videos"] = inputs["pixel_values_videos"].view(2, 64, -1)[r]
    # a stop token that ends the two answers after different numbers of tokens (measured: 2 and 6)
    free = StreamSession(model, batch_size=2)
    for piece in pieces(inputs, [2], groups=4)[0][:2]:
        free.observe_tokens(**piece)
    tokens = free.ask_tokens(suffix, max_new_tokens=6).tolist()
    first = lambda row, t: row.index(t) if t in row else len(row)  # noqa: E731
    stop = next(t for t in sorted(set(tokens[0]) | set(tokens[1]))
                if first(tokens[0], t) != first(tokens[1], t) and min(first(tokens[0], t), first(tokens[1], t)) < 5)
    answers, together = kept_then_follow_up(model, inputs, suffix, stop)
    lengths = [row.index(stop) + 1 if stop in row else 6 for row in tokens]
    assert lengths[0] != lengths[1]
    for r in range(2):
        alone_answer, alone = kept_then_follow_up(model, rows[r], suffix[:1], stop)
        assert answers[r, : lengths[r]].tolist() == alone_answer[0].tolist()
        torch.testing.assert_close(together[r : r + 1], alone, atol=1e-5, rtol=0)


def test_a_kept_answer_closes_its_turn(processor):
    """After ask(keep=True) the memory holds question, answer and the end of the turn, so the next observe opens a
    new user turn as the chat template of two turns does."""
    assert processor.turn_end().input_ids[0].tolist() == TURN_END
    assert processor.decode(TURN_END, skip_special_tokens=False) == "<|im_end|>\n<|im_start|>user\n"
    model = tiny_model(use_muon=False, lact_chunk_size=16)
    session = model.stream(processor)
    session.observe(frames(2), [0.0, 0.5])
    before = session.stream.model.num_tokens
    answer = session.ask_tokens(processor.suffix("Q").input_ids, 3, keep=True, turn_end_ids=TURN_END, stop_token_ids=[])
    # 3 tokens answered (the last one fed when the turn closes), then the turn end
    assert session.stream.model.num_tokens == before + len(processor.suffix("Q")) + 3 + len(TURN_END)
    assert answer.shape == (1, 3)
    # an answer that stops: its stop token is not fed, the turn end (which starts with <|im_end|>) is
    second = model.stream(processor)
    second.observe(frames(2), [0.0, 0.5])
    first = second.ask_tokens(processor.suffix("Q").input_ids, 3, stop_token_ids=[])[0, 0]
    start = second.stream.model.num_tokens
    kept = second.ask_tokens(processor.suffix("Q").input_ids, 3, keep=True, turn_end_ids=TURN_END,
                             stop_token_ids=[int(first)])
    assert kept[0, 0] == first
    assert second.stream.model.num_tokens == start + len(processor.suffix("Q")) + len(TURN_END)


# -- odd frames ----------------------------------------------------------------------------------------------


def test_a_question_between_odd_frames_leaves_the_memory_unchanged(processor):
    model = tiny_model(use_muon=False, lact_chunk_size=16)
    video, times = frames(6), [0.5 * i for i in range(6)]
    asked = model.stream(processor)
    asked.observe(video[:3], times[:3])
    asked.ask("What is there?", max_new_tokens=3)
    asked.observe(video[3:], times[3:])
    plain = model.stream(processor)
    plain.observe(video, times)
    assert asked.num_frames == plain.num_frames == 6 and asked.pending is None
    assert_same_memory(asked.stream, plain.stream, atol=1e-5)  # text is cut into other segments: float rounding
    assert asked.ask("How many?", max_new_tokens=5, stop_token_ids=[]) == plain.ask("How many?", max_new_tokens=5, stop_token_ids=[])


def test_a_question_with_an_odd_frame_pending_answers_like_the_one_shot_prompt(processor):
    """The question sees the pending frame padded (Qwen3-VL pads an odd video by repeating its last frame)."""
    from spatial_ttt.video import VideoClip

    model = tiny_model(use_muon=False, lact_chunk_size=16)
    video, times = frames(3), [0.0, 0.5, 1.0]
    session = model.stream(processor)
    session.observe(video, times)
    answer = session.ask("How many chairs?", max_new_tokens=6, stop_token_ids=[])
    clip = VideoClip(frames=torch.from_numpy(video), timestamps=times, frame_indices=[0, 1, 2], video_fps=2.0, source="t")
    inputs = processor(clip, "How many chairs?")
    assert inputs["video_grid_thw"].tolist() == [[2, 4, 4]]
    generated = model.generate(**inputs, max_new_tokens=6)
    assert answer == processor.decode(generated[0, inputs["input_ids"].shape[1]:])
    assert session.pending is not None and session.stream.num_frame_groups == 1  # the memory holds one pair
