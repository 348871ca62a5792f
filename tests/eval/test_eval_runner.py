import json

import pytest
from eval_fixtures import FakeStreamingModel, FakeVideoModel

from spatial_ttt.eval import EvalError, run_benchmark


def _lines(out):
    return (out / "results.jsonl").read_text().splitlines()


def test_rerun_skips_done_samples(vsibench_dir, vsibench_model, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, limit=4, progress=False)
    assert len(vsibench_model.calls) == 4 and len(_lines(out)) == 4
    summary = run_benchmark("vsibench", vsibench_dir, vsibench_model, out, progress=False)
    assert len(vsibench_model.calls) == 11  # only the 7 not done before
    assert len(_lines(out)) == 11 and summary.overall == pytest.approx(31 / 48)
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, progress=False)
    assert len(vsibench_model.calls) == 11  # nothing left to do


def test_torn_last_line_is_repaired_and_rerun(vsibench_dir, vsibench_model, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, limit=3, progress=False)
    good = _lines(out)
    with open(out / "results.jsonl", "a") as f:  # a crash in the middle of writing sample 4
        f.write('{"id": "4", "question_type": "object_rel')
    vsibench_model.calls.clear()
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, progress=False)
    assert len(vsibench_model.calls) == 8  # samples 4..11, sample 4 again
    lines = _lines(out)
    assert lines[:3] == good and [json.loads(line)["id"] for line in lines] == [str(i) for i in range(1, 12)]


def test_corrupt_line_in_the_middle_is_an_error(vsibench_dir, vsibench_model, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, limit=2, progress=False)
    lines = _lines(out)
    (out / "results.jsonl").write_text(lines[0] + "\n{garbage\n" + lines[1] + "\n")
    with pytest.raises(EvalError, match=r"results.jsonl line 2: corrupt result line"):
        run_benchmark("vsibench", vsibench_dir, vsibench_model, out, progress=False)


def test_resume_with_other_settings_is_refused(vsibench_dir, vsibench_model, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, limit=1, progress=False)
    with pytest.raises(EvalError, match=r"other settings \(rooms_hint: True -> False\)"):
        run_benchmark("vsibench", vsibench_dir, vsibench_model, out, rooms_hint=False, progress=False)
    with pytest.raises(EvalError, match="max_new_tokens: 16 -> 32"):
        run_benchmark("vsibench", vsibench_dir, vsibench_model, out, max_new_tokens=32, progress=False)


def test_summary_written_atomically(vsibench_dir, vsibench_model, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl", "run.json", "summary.json", "summary.md"]


def test_missing_video_reported_before_any_question(vsibench_dir, vsibench_model, tmp_path):
    (vsibench_dir / "arkitscenes" / "scene1.mp4").unlink()
    with pytest.raises(EvalError, match=r"4 media file\(s\) not found: sample 8: .*arkitscenes/scene1.mp4"):
        run_benchmark("vsibench", vsibench_dir, vsibench_model, tmp_path / "o", progress=False)
    assert vsibench_model.calls == []
    # the first 7 samples only need the video that exists
    run_benchmark("vsibench", vsibench_dir, vsibench_model, tmp_path / "o", limit=7, progress=False)


def test_wrong_model_kind_and_bad_arguments(vsibench_dir, tmp_path):
    streaming_only = FakeStreamingModel(lambda p, k: "1")
    with pytest.raises(EvalError, match=r"vsibench needs a model with answer\(video, prompt"):
        run_benchmark("vsibench", vsibench_dir, streaming_only, tmp_path / "o", progress=False)
    with pytest.raises(EvalError, match=r"vsisuper_count needs a model with open_stream\(\)"):
        run_benchmark("vsisuper-count", vsibench_dir, FakeVideoModel({}), tmp_path / "o", progress=False)
    with pytest.raises(EvalError, match="unknown benchmark 'vsi'"):
        run_benchmark("vsi", vsibench_dir, FakeVideoModel({}), tmp_path / "o", progress=False)
    with pytest.raises(EvalError, match="--limit must be at least 1"):
        run_benchmark("vsibench", vsibench_dir, FakeVideoModel({}), tmp_path / "o", limit=0, progress=False)


def _ids(path):
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_shards_merge_into_the_single_process_summary(vsibench_dir, tmp_path):
    single = run_benchmark("vsibench", vsibench_dir, _model(), tmp_path / "single", progress=False)
    out = tmp_path / "sharded"
    first, second = _model(), _model()
    assert run_benchmark("vsibench", vsibench_dir, first, out, shard=(0, 2), progress=False) is None  # 1 of 2 done
    assert not (out / "summary.json").exists()
    merged = run_benchmark("vsibench", vsibench_dir, second, out, shard=(1, 2), progress=False)
    # shard r of 2 runs samples r, r + 2, ... (ids 1..11 in file order), each into its own file
    assert _ids(out / "results.rank0.jsonl") == ["1", "3", "5", "7", "9", "11"]
    assert _ids(out / "results.rank1.jsonl") == ["2", "4", "6", "8", "10"]
    assert len(first.calls) == 6 and len(second.calls) == 5
    assert merged == single and merged.overall == pytest.approx(31 / 48)
    assert (out / "summary.json").read_text() == (tmp_path / "single" / "summary.json").read_text()

    # resumable whatever the shards: nothing is asked again, by 3 shards or by one process
    again = _model()
    for rank in range(3):
        assert run_benchmark("vsibench", vsibench_dir, again, out, shard=(rank, 3), progress=False) == single
    assert run_benchmark("vsibench", vsibench_dir, again, out, progress=False) == single
    assert again.calls == []


def test_shard_resumes_its_own_file_and_ignores_a_tail_being_written(vsibench_dir, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, _model(), out, limit=6, shard=(0, 2), progress=False)  # ids 1, 3, 5
    with open(out / "results.rank0.jsonl", "a") as f:  # shard 0 is still writing its next line
        f.write('{"id": "7", "question_type"')
    model = _model()
    assert run_benchmark("vsibench", vsibench_dir, model, out, limit=6, shard=(1, 2), progress=False) is not None
    assert [c[1].split("\n")[1].split(":")[0] for c in model.calls] == ["Q2", "Q4", "Q6"]
    assert (out / "results.rank0.jsonl").read_text().endswith('"question_type"')  # not touched by shard 1
    with pytest.raises(EvalError, match="shard 2 of 2 does not exist"):
        run_benchmark("vsibench", vsibench_dir, model, out, shard=(2, 2), progress=False)


def _model():
    from eval_fixtures import VSIBENCH_CASES

    return FakeVideoModel({r["question"]: pred for r, pred in VSIBENCH_CASES})
