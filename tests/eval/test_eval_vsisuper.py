from pathlib import Path

import pytest
from eval_fixtures import FakeStreamingModel, touch, write_jsonl

from spatial_ttt.eval import EvalError, run_benchmark
from spatial_ttt.eval.vsisuper import (
    Ask,
    Observe,
    VSISuperCount,
    plan_stream,
    probe_duration,
)

A, B = Path("a.mp4"), Path("b.mp4")


def test_plan_single_video_asks_during_and_at_end():
    assert plan_stream([A], None, [10.0, 20.0], 3) == [
        Observe(A, None, 10.0),
        Ask(0),
        Observe(A, 10.0, 20.0),
        Ask(1),
        Observe(A, 20.0, None),
        Ask(2),
    ]
    # as many answers as query times: nothing is fed after the last question
    assert plan_stream([A], None, [10.0], 1) == [Observe(A, None, 10.0), Ask(0)]
    assert plan_stream([A, B], None, [], 1) == [Observe(A, None, None), Observe(B, None, None), Ask(0)]


def test_plan_over_concatenated_segments():
    # segments of 30 s each; query at 45 s is 15 s into b.mp4
    assert plan_stream([A, B], [30.0, 30.0], [45.0], 2) == [
        Observe(A, None, None),
        Observe(B, None, 15.0),
        Ask(0),
        Observe(B, 15.0, None),
        Ask(1),
    ]
    # a query exactly at a boundary ends the first segment, feeds nothing of the second
    assert plan_stream([A, B], [30.0, 30.0], [30.0], 2) == [
        Observe(A, None, None),
        Ask(0),
        Observe(B, None, None),
        Ask(1),
    ]


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
        ],
    )
    for name in ("10min_0.mp4", "a.mp4", "b.mp4"):
        touch(root / "videos" / name)
    return root


def test_count_streaming_scores_by_hand(tmp_path):
    replies = {"chairs": ["9"], "tables": ["2", "5"], "beds": ["many"]}
    model = FakeStreamingModel(lambda prompt, k: next(v for key, v in replies.items() if key in prompt)[k])
    bench = VSISuperCount(duration_probe=lambda p: 30.0)
    summary = run_benchmark(bench, _count_dir(tmp_path), model, tmp_path / "out", progress=False)
    # c1: 9 vs 10 -> 0.9. s1: 2 vs 2 -> 1.0, 5 vs 4 (error 0.25) -> 0.6. s2: "many" -> 0.
    # Per split, the mean over all asked questions: 10mins_streaming = (1.0 + 0.6 + 0) / 3
    scores = {r.name: (r.score, r.n) for r in summary.rows}
    assert list(scores) == ["10mins", "10mins_streaming"]
    assert scores["10mins"] == (pytest.approx(0.9), 1)
    assert scores["10mins_streaming"] == (pytest.approx(1.6 / 3), 3)
    assert summary.overall is None

    assert len(model.sessions) == 3 and all(s.closed for s in model.sessions)
    s1, s2 = model.sessions[1].log, model.sessions[2].log
    assert s1 == [
        ("observe", "10min_0.mp4", None, 60.0),
        ("ask", 16),
        ("observe", "10min_0.mp4", 60.0, 120.0),
        ("ask", 16),
    ]
    assert s2 == [("observe", "a.mp4", None, None), ("observe", "b.mp4", None, 15.0), ("ask", 16)]


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


def test_probe_duration_of_a_real_video(tmp_path):
    av = pytest.importorskip("av")
    import numpy as np

    path = tmp_path / "tiny.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=5)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(10):  # 10 frames at 5 fps = 2 s
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert probe_duration(path) == pytest.approx(2.0, abs=0.25)
