import json

import typer
from typer.testing import CliRunner

from spatial_ttt.data.cli import register
from spatial_ttt.data.dataset import generate_synthetic_dataset
from spatial_ttt.data.readers import read_scene
from spatial_ttt.data.sft import read_sft_shards, write_sft_shards


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_synthetic_dataset_end_to_end(tmp_path):
    kw = dict(num_scenes=2, frames_per_scene=16, seed=3, width=96, height=64, shard_size=7, progress=False)
    summary = generate_synthetic_dataset(tmp_path / "a", **kw)
    assert summary["built"] == 2 and summary["records"] > 10
    shards = [p for p in sorted((tmp_path / "a" / "sft").glob("*.jsonl"))]
    lines = [len(p.read_text().splitlines()) for p in shards]
    assert lines[:-1] == [7] * (len(lines) - 1) and 1 <= lines[-1] <= 7 and sum(lines) == summary["records"]
    records = list(read_sft_shards(tmp_path / "a" / "sft"))
    for r in records:
        assert (tmp_path / "a" / r["video"]).is_file()
        assert r["conversations"][0]["value"].startswith("<video>\n")
    scene = read_scene(tmp_path / "a" / "scenes" / "scene_00001")
    assert scene.has_visibility() and len(scene.frames) == 16
    # same seed, other folder: byte-identical dataset; resuming builds nothing and changes nothing
    generate_synthetic_dataset(tmp_path / "b", **kw)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    again = generate_synthetic_dataset(tmp_path / "a", **kw)
    assert again["built"] == 0 and again["reused"] == 2
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert not list((tmp_path / "a" / "scenes").glob(".*"))  # no temp folders left


def test_shards_replace_stale(tmp_path):
    write_sft_shards([{"i": i} for i in range(5)], tmp_path, shard_size=2)
    assert len(list(tmp_path.glob("sft-*.jsonl"))) == 3
    write_sft_shards([{"i": i} for i in range(3)], tmp_path, shard_size=2)
    assert [r["i"] for r in read_sft_shards(tmp_path)] == [0, 1, 2]
    assert not list(tmp_path.glob(".*"))


def _app():
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test app"""

    register(app)
    return app


def test_cli(tmp_path):
    runner, app = CliRunner(), _app()
    res = runner.invoke(app, ["data", "--help"])
    assert res.exit_code == 0 and "synth" in res.output and "qa" in res.output
    res = runner.invoke(app, ["data", "synth", str(tmp_path / "ds"), "--scenes", "1", "--frames", "8",
                              "--width", "64", "--height", "48", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "1 scenes (1 built, 0 reused)" in res.output
    res = runner.invoke(app, ["data", "validate", str(tmp_path / "ds" / "scenes" / "scene_00000")])
    assert res.exit_code == 0 and "scene_00000: 1 room(s)" in res.output
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"scene_id": "mine", "objects": [
        {"label": "chair", "center": [1, 1, 0.5], "size": [0.5, 0.5, 1]},
        {"label": "chair", "center": [3, 1, 0.5], "size": [0.5, 0.5, 1]},
        {"label": "table", "center": [2, 3, 0.4], "size": [1, 1, 0.8]}]}))
    res = runner.invoke(app, ["data", "qa", str(boxes), str(tmp_path / "out"), "--video", "mine.mp4"])
    assert res.exit_code == 0, res.output
    recs = list(read_sft_shards(tmp_path / "out", prefix="sft-mine"))
    assert any(r["conversations"][1]["value"] == "2" and "chair(s)" in r["conversations"][0]["value"] for r in recs)
    assert all(r["video"] == "mine.mp4" for r in recs)
    boxes.write_text(json.dumps({"objects": [{"label": "chair", "center": [1, 1], "size": [1, 1, 1]}]}))
    res = runner.invoke(app, ["data", "validate", str(boxes)])
    assert res.exit_code == 2 and "center must have 3 numbers" in res.output
