import json

import typer
from eval_fixtures import VSIBENCH_CASES, FakeVideoModel
from typer.testing import CliRunner

from spatial_ttt.eval.cli import register
from spatial_ttt.eval.parallel import default_device


def _app(loaded: list):
    app = typer.Typer()

    @app.command()
    def version() -> None:  # a second command keeps `eval` a subcommand
        print("0")

    def load_model(path: str, device: str):
        loaded.append((path, device))
        return FakeVideoModel({r["question"]: pred for r, pred in VSIBENCH_CASES})

    register(app, load_model)
    return app


def test_eval_command_runs_and_prints_table(vsibench_dir, tmp_path):
    loaded = []
    out = tmp_path / "out"
    args = ["eval", "vsibench", "--data", str(vsibench_dir), "--model", "ckpt/", "--out", str(out)]
    result = CliRunner().invoke(_app(loaded), args)
    assert result.exit_code == 0, result.output
    assert loaded == [("ckpt/", default_device())]  # cuda:LOCAL_RANK where there is a GPU, else cpu
    assert "64.6" in result.output and "object_counting" in result.output
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 11
    assert json.loads((out / "run.json").read_text())["rooms_hint"] is True


def test_eval_options_limit_and_no_hint(vsibench_dir, tmp_path):
    out = tmp_path / "out"
    args = [
        "eval",
        "vsibench",
        "--data",
        str(vsibench_dir),
        "--model",
        "m",
        "--out",
        str(out),
        "--limit",
        "2",
        "--no-sum-rooms-hint",
        "--max-new-tokens",
        "8",
    ]
    result = CliRunner().invoke(_app([]), args)
    assert result.exit_code == 0, result.output
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 2 and not any("There maybe many rooms" in r["prompt"] for r in results)
    assert json.loads((out / "run.json").read_text()) == {"bench": "vsibench", "rooms_hint": False, "max_new_tokens": 8}


def test_errors_exit_2_with_message_and_skip_model_load(tmp_path):
    loaded = []
    app = _app(loaded)
    result = CliRunner().invoke(
        app, ["eval", "nope", "--data", str(tmp_path), "--model", "m", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "unknown benchmark 'nope'" in result.output
    result = CliRunner().invoke(
        app, ["eval", "vsibench", "--data", str(tmp_path / "missing"), "--model", "m", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "data path does not exist" in result.output
    assert loaded == []


def test_bad_record_is_named(tmp_path):
    bad = tmp_path / "d" / "test.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps(VSIBENCH_CASES[0][0] | {"question_type": "colour"}) + "\n")
    result = CliRunner().invoke(
        _app([]), ["eval", "vsibench", "--data", str(bad), "--model", "m", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "record #0" in result.output and "unknown question_type 'colour'" in result.output
