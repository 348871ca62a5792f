import json
from pathlib import Path

import pytest
from eval_fixtures import FakeStreamingModel, touch, write_jsonl

from spatial_ttt.eval import EvalError, run_benchmark
from spatial_ttt.eval.vsisuper import (
    Ask,
    Observe,
    VSISuperCount,
    count_frames,
    plan_stream,
)

A, B = Path("a.mp4"), Path("b.mp4")


def test_plan_asks_after_frame_t_was_added():
    # 25 frames at 1 fps (0..24). Query at t = 10: frames 0..10 seen (11 frames), so feed [0 s, 11 s).
    assert plan_stream([A], [25], [10, 20], 3) == [
        Observe(A, None, 11.0),
        Ask(0),
        Observe(A, 11.0, 21.0),
        Ask(1),
        Observe(A, 21.0, None),
        Ask(2),
    ]
    # as many answers as query times: nothing is fed after the last question
    assert plan_stream([A], [25], [10], 1) == [Observe(A, None, 11.0), Ask(0)]
    # query at t = 0: after the first frame
    assert plan_stream([A], [25], [0], 1) == [Observe(A, None, 1.0), Ask(0)]
    # no query times: feed everything, ask once; no frame counts needed
    assert plan_stream([A, B], None, [], 1) == [Observe(A, None, None), Observe(B, None, None), Ask(0)]


def test_plan_query_times_at_or_past_the_end_never_fire():
    # 25 frames: t = 24 is the last frame and fires; t = 25 and 40 never do
    assert plan_stream([A], [25], [24, 25, 40], 3) == [Observe(A, None, None), Ask(0)]
    # the extra end-of-stream question is still asked (after everything was fed)
    assert plan_stream([A], [25], [5, 30], 3) == [Observe(A, None, 6.0), Ask(0), Observe(A, 6.0, None), Ask(2)]


def test_plan_over_concatenated_segments():
    # segments of 30 frames each: the stream's frame 45 is frame 15 of b.mp4; feed b's [0 s, 16 s)
    assert plan_stream([A, B], [30, 30], [45], 2) == [
        Observe(A, None, None),
        Observe(B, None, 16.0),
        Ask(0),
        Observe(B, 16.0, None),
        Ask(1),
    ]
    # frame 29 is the last of a.mp4: ask right after it, before any of b.mp4
    assert plan_stream([A, B], [30, 30], [29], 2) == [
        Observe(A, None, None),
        Ask(0),
        Observe(B, None, None),
        Ask(1),
    ]
    # frame 30 is the first of b.mp4
    assert plan_stream([A, B], [30, 30], [30], 1) == [Observe(A, None, None), Observe(B, None, 1.0), Ask(0)]
    with pytest.raises(EvalError, match="frame count of every segment"):
        plan_stream([A, B], None, [30], 1)


@pytest.mark.parametrize(
    "times, n, message",
    [([10.0, 5.0], 2, "increasing"), ([-1.0], 1, "non-negative"), ([10.0], 3, "3 answers do not fit 1 query times")],
)
def test_plan_rejects_bad_queries(times, n, message):
    with pytest.raises(EvalError, match=message):
        plan_stream([A], None, times, n)


def _count_dir(tmp_path):
    root = tmp_path / "VSI-SUPER-Count"
    write_jsonl(
        root / "test.jsonl",
        [
            {
                "id": "c1",
                "video_path": "videos/10min_0.mp4",
                "question": " How many chairs are there? ",
                "answer": 10,
                "split": "10mins",
            },
            {"id": "c2", "video_path": "videos/a.mp4", "question": "How many sofas?", "answer": 4, "split": "10mins"},
            {
                "id": "s1",
                "video_path": "videos/10min_0.mp4",
                "question": "How many tables?",
                "split": "10mins_streaming",
                "query_times": [60, 120],
                "answers": [2, 4],
            },
            {
                "id": "s2",
                "video_path": ["videos/a.mp4", "videos/b.mp4"],
                "question": "How many beds?",
                "split": "10mins_streaming",
                "query_times": [45],
                "answers": [5],
            },
            {
                "id": "s3",
                "video_path": "videos/a.mp4",
                "question": "How many lamps?",
                "split": "10mins_streaming",
                "query_times": [10, 40],
                "answers": [3, 6],
            },
        ],
    )
    for name in ("10min_0.mp4", "a.mp4", "b.mp4"):
        touch(root / "videos" / name)
    return root


FRAMES = {"10min_0.mp4": 600, "a.mp4": 30, "b.mp4": 30}  # 1 fps frame counts of the fixture videos


def test_count_streaming_scores_by_hand(tmp_path):
    replies = {
        "chairs": ["9"],
        "sofas": ["4 sofas"],
        "tables": ["2", " 5\n"],
        "beds": ["many"],
        "lamps": ["<answer>3</answer>"],
    }
    model = FakeStreamingModel(lambda prompt, k: next(v for key, v in replies.items() if key in prompt)[k])
    bench = VSISuperCount(frame_counter=lambda p: FRAMES[p.name])
    summary = run_benchmark(bench, _count_dir(tmp_path), model, tmp_path / "out", progress=False)
    # c1: 9 vs 10 -> 0.9; c2: "4 sofas" is not a float -> 0 (the whole answer must parse).
    # s1: 2 vs 2 -> 1.0, " 5\n" vs 4 (error 0.25) -> 0.6. s2: "many" -> 0. s3: 3 vs 3 -> 1.0; its query at
    # 40 s is past a.mp4's 30 frames and never fires. Per split: the flat mean over all fired queries.
    scores = {r.name: (r.score, r.n) for r in summary.rows}
    assert list(scores) == ["10mins", "10mins_streaming"]
    assert scores["10mins"] == (pytest.approx(0.45), 2)
    assert scores["10mins_streaming"] == (pytest.approx(2.6 / 4), 4)
    assert summary.overall is None
    assert summary.notes == ["1 query time(s) at or past the end of their video never fired (not scored)"]

    assert len(model.sessions) == 5 and all(s.closed for s in model.sessions)
    s1, s2, s3 = (model.sessions[k].log for k in (2, 3, 4))
    assert s1 == [
        ("observe", "10min_0.mp4", None, 61.0),
        ("ask", 16),
        ("observe", "10min_0.mp4", 61.0, 121.0),
        ("ask", 16),
    ]
    assert s2 == [("observe", "a.mp4", None, None), ("observe", "b.mp4", None, 16.0), ("ask", 16)]
    assert s3 == [("observe", "a.mp4", None, 11.0), ("ask", 16)]
    s3_result = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()][-1]
    assert s3_result["predictions"] == ["<answer>3</answer>", None] and s3_result["scores"] == [1.0, None]
    assert s3_result["extracted"] == ["3", None] and s3_result["score"] == 1.0


def test_query_times_must_be_whole_seconds(tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [{"video_path": "v.mp4", "question": "q", "split": "x", "query_times": [1.5], "answers": [1]}],
    )
    with pytest.raises(EvalError, match=r"t.jsonl record #0: field 'query_times' must hold whole seconds"):
        VSISuperCount().load(path, tmp_path)


def test_count_prompt_is_stripped_numerical_prompt(tmp_path):
    prompts = []
    model = FakeStreamingModel(lambda prompt, k: prompts.append(prompt) or "1")
    run_benchmark(
        "vsisuper_count", _count_dir(tmp_path), model, tmp_path / "o", limit=1, rooms_hint=False, progress=False
    )
    assert prompts == [
        "These are frames of a video.\nHow many chairs are there?\n"
        "Please answer the question using a single word or phrase."
    ]


def test_recall_is_multiple_choice_asked_at_the_end(tmp_path):
    root = tmp_path / "VSI-SUPER-Recall"
    options = ["A. sofa, bed", "B. bed, sofa", "C. sink, bed", "D. bed, sink"]
    write_jsonl(
        root / "test.jsonl",
        [
            {
                "video_path": "v10.mp4",
                "question": "Where was the teddy bear?",
                "options": options,
                "answer": "A",
                "type": "10mins",
            },
            {
                "video_path": "v30.mp4",
                "question": "Where was the teddy bear?",
                "options": options,
                "answer": "B",
                "type": "30mins",
            },
            {
                "video_path": "v30.mp4",
                "question": "Where was the teddy bear?",
                "options": options,
                "answer": "C",
                "type": "30mins",
            },
        ],
    )
    for name in ("v10.mp4", "v30.mp4"):
        touch(root / name)
    replies = iter(["A", "b. bed, sofa", "D"])
    prompts = []
    model = FakeStreamingModel(lambda prompt, k: prompts.append(prompt) or next(replies))
    summary = run_benchmark("vsisuper_recall", root, model, tmp_path / "o", rooms_hint=False, progress=False)
    assert [(r.name, r.metric, r.score, r.n) for r in summary.rows] == [
        ("10mins", "accuracy", 1.0, 1),
        ("30mins", "accuracy", 0.5, 2),
    ]
    assert prompts[0] == (
        "Where was the teddy bear?\nOptions:\nA. sofa, bed\nB. bed, sofa\nC. sink, bed\nD. bed, sink\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert model.sessions[0].log == [("observe", "v10.mp4", None, None), ("ask", 16)]


def test_streaming_record_errors_are_named(tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl",
        [
            {
                "video_path": "v.mp4",
                "question": "How many?",
                "split": "10mins_streaming",
                "query_times": [5, 1],
                "answers": [1, 2],
            },
        ],
    )
    with pytest.raises(EvalError, match=r"t.jsonl record #0: query times must be non-negative and increasing"):
        VSISuperCount().load(path, tmp_path)
    path = write_jsonl(tmp_path / "u.jsonl", [{"video_path": 3, "question": "q", "answer": 1}])
    with pytest.raises(EvalError, match=r"u.jsonl record #0: field 'video_path'"):
        VSISuperCount().load(path, tmp_path)


def test_count_frames_of_a_real_video(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    path = tmp_path / "tiny.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(10):  # frames at 0, 0.25, ..., 2.25 s: 1 fps frames at 0, 1, 2 s
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert count_frames(path) == 3
    from spatial_ttt.pipeline import iter_video_frames  # what the streaming pipeline really reads

    assert [t for _, t in iter_video_frames(path, fps=1.0, size=None)] == [0.0, 1.0, 2.0]
    assert count_frames(path, fps=4.0) == 10
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(EvalError, match="bad.mp4: cannot read the video"):
        count_frames(bad)
