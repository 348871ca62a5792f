import json
import sys
from pathlib import Path

import pytest
from eval_fixtures import VSIBENCH_CASES, write_jsonl

from spatial_ttt.eval import EvalError, run_benchmark
from spatial_ttt.eval.datafiles import Row
from spatial_ttt.eval.prompts import ROOMS_HINT
from spatial_ttt.eval.vsibench import VSIBench, build_prompt, parse


def _record(fields):
    return parse(Row(Path("x.jsonl"), 0, fields), [Path("/data")])


def test_multiple_choice_prompt_is_the_official_text():
    record = _record(VSIBENCH_CASES[0][0])
    assert build_prompt(record, rooms_hint=False) == (
        "These are frames of a video.\n"
        "Q1: multiple choice object_rel_direction_easy?\n"
        "Options:\nA. chair\nB. table\nC. sofa\nD. bed\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert record.video == Path("/data/scannet/scene0.mp4")


def test_numerical_prompt_with_rooms_hint():
    record = _record(VSIBENCH_CASES[7][0])
    assert build_prompt(record, rooms_hint=True) == (
        "These are frames of a video.\nQ8: how much object_counting?\n"
        "Please answer the question using a single word or phrase."
        " There maybe many rooms in the video, sum the counts from all rooms/scenes to produce the final total."
    )
    assert ROOMS_HINT.startswith(" There maybe")


def test_scores_and_aggregation_by_hand(vsibench_dir, vsibench_model, tmp_path):
    summary = run_benchmark("vsibench", vsibench_dir, vsibench_model, tmp_path / "out", progress=False)
    scores = {r.name: r.score for r in summary.rows}
    # By hand, from the predictions in conftest.VSIBENCH_CASES:
    # rel. direction: easy 2/2 = 1, medium "c" vs C = 1, hard 0 -> (1 + 1 + 0) / 3 (question mean would be 3/4)
    # rel. distance "B. table" -> B = 1; route "The answer is B" -> "The" = 0; appearance "C." = 1
    # counting 3 vs 4 -> 0.6; abs. distance 9 vs 10 -> 0.9; size "about 50" -> 0; room "20." vs 20 -> 1
    expected = {
        "object_counting": 0.6,
        "object_abs_distance": 0.9,
        "object_size_estimation": 0.0,
        "room_size_estimation": 1.0,
        "object_rel_distance": 1.0,
        "object_rel_direction": 2 / 3,
        "route_planning": 0.0,
        "obj_appearance_order": 1.0,
    }
    assert list(scores) == list(expected)  # the published column order
    assert scores == pytest.approx(expected)
    # overall = mean of the 8 task scores = (0.6 + 0.9 + 0 + 1 + 1 + 2/3 + 0 + 1) / 8 = 31/48
    assert summary.overall == pytest.approx(31 / 48)
    assert summary.n_samples == 11 and summary.notes == []
    rel_dir = next(r for r in summary.rows if r.name == "object_rel_direction")
    assert (rel_dir.metric, rel_dir.n) == ("accuracy", 4)
    assert next(r for r in summary.rows if r.name == "object_counting").metric == "MRA"


def test_per_sample_results_and_markdown(vsibench_dir, vsibench_model, tmp_path):
    out = tmp_path / "out"
    run_benchmark("vsibench", vsibench_dir, vsibench_model, out, progress=False)
    lines = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [str(i) for i in range(1, 12)]
    assert lines[4] | {"prompt": None} == {
        "id": "5",
        "question_type": "object_rel_distance",
        "dataset": "scannet",
        "scene_name": "scene0",
        "prompt": None,
        "prediction": "B. table",
        "extracted": "B",
        "ground_truth": "B",
        "score": 1.0,
    }
    assert all(call[2] == 16 for call in vsibench_model.calls)  # max_new_tokens of the task
    md = (out / "summary.md").read_text()
    assert "| object_counting | MRA | 60.0 | 1 |" in md
    assert "| **overall** | | **64.6** | 11 |" in md
    assert json.loads((out / "summary.json").read_text())["overall"] == pytest.approx(31 / 48)


def test_partial_run_is_flagged(vsibench_dir, vsibench_model, tmp_path):
    summary = run_benchmark("vsibench", vsibench_dir, vsibench_model, tmp_path / "o", limit=2, progress=False)
    assert [r.name for r in summary.rows] == ["object_rel_direction"]
    assert summary.overall == 1.0
    assert "partial run" in summary.notes[0]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"question_type": "object_colour"}, "unknown question_type 'object_colour'"),
        ({"question": None}, "missing field 'question'"),
        ({"ground_truth": "many"}, "'ground_truth' = 'many' is not a number"),
        ({"options": []}, "'options' must be a non-empty list of strings"),
        ({"dataset": 3}, "field 'dataset' has type int, expected str"),
    ],
)
def test_malformed_record_names_file_and_record(tmp_path, change, message):
    base = dict(VSIBENCH_CASES[7][0] if "ground_truth" in change else VSIBENCH_CASES[0][0])
    path = write_jsonl(tmp_path / "d" / "test.jsonl", [VSIBENCH_CASES[1][0], base | change])
    with pytest.raises(EvalError, match="record #1") as err:
        VSIBench().load(path, tmp_path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_duplicate_ids_rejected(tmp_path):
    path = write_jsonl(tmp_path / "test.jsonl", [VSIBENCH_CASES[0][0], VSIBENCH_CASES[0][0]])
    with pytest.raises(EvalError, match="duplicate id '1'"):
        VSIBench().load(path, tmp_path)


def test_reads_json_list_and_parquet_shards(tmp_path):
    records = [r for r, _ in VSIBENCH_CASES]
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "test.json").write_text(json.dumps(records))
    assert [r.id for r in VSIBench().load(tmp_path / "j", tmp_path)] == [str(i) for i in range(1, 12)]

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = tmp_path / "p" / "data"
    data.mkdir(parents=True)
    for k, chunk in enumerate((records[:6], records[6:])):
        pq.write_table(pa.Table.from_pylist(chunk), data / f"test-0000{k}-of-00002.parquet")
    loaded = VSIBench().load(tmp_path / "p", tmp_path)
    assert [r.ground_truth for r in loaded] == [r["ground_truth"] for r in records]
    assert loaded[0].video == tmp_path / "p" / "scannet" / "scene0.mp4"


def test_ambiguous_or_missing_record_files(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [])
    write_jsonl(tmp_path / "b.jsonl", [])
    with pytest.raises(EvalError, match="several record files .*a.jsonl, b.jsonl"):
        VSIBench().load(tmp_path, tmp_path)
    with pytest.raises(EvalError, match="data path does not exist"):
        VSIBench().load(tmp_path / "missing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EvalError, match="no record file"):
        VSIBench().load(tmp_path / "empty", tmp_path)


def test_bad_json_line_is_named(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(VSIBENCH_CASES[0][0]) + "\n{oops\n")
    with pytest.raises(EvalError, match=r"test.jsonl line 2: not valid JSON"):
        VSIBench().load(path, tmp_path)


def test_parquet_without_pyarrow_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    (tmp_path / "test.parquet").write_bytes(b"PAR1")
    with pytest.raises(EvalError, match=r"test.parquet: reading parquet needs pyarrow \(pip install pyarrow==26.0.1\)"):
        VSIBench().load(tmp_path / "test.parquet", tmp_path)
