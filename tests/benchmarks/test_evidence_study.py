"""benchmarks/evidence: the compact suite rendering matches the library's records, and the equal-step budget."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spatial_ttt.data.memory_tasks import HELD_OUT_SEED, iter_scene_records
from spatial_ttt.train.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / "evidence" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_steps_is_set_by_the_slowest_run():
    run_device = _module("run_device")
    fast = {"setup_s": 5.0, "compile_s": 0.0, "eval_s_per_record": 0.05, "step_s": 0.1}
    slow = {"setup_s": 10.0, "compile_s": 20.0, "eval_s_per_record": 0.1, "step_s": 0.5}
    # slow: 300 s - (10 + 0.1 * 20 + 1.25 * 0.1 * 300 + 25) = 225.5 s of steps at 1.15 * 0.5 s: 392.2 -> 390
    assert run_device.equal_steps({"a": fast, "b": slow}, 300.0, 300, 4000) == 390
    # fast alone: (300 - (5 + 0 + 18.75 + 25)) / 0.115 = 2184.8 -> 2180, unless max_steps is lower
    assert run_device.equal_steps({"a": fast}, 300.0, 300, 4000) == 2180
    assert run_device.equal_steps({"a": fast}, 300.0, 300, 1000) == 1000


def test_runs_with_fast_weights_are_spread_over_the_gpus_first():
    run_device = _module("run_device")
    names = {f"{v}-s{s}": (v, s) for s in (1, 2) for v in ("ttt_all", "swa_all", "hybrid", "full", "noconv")}
    dealt = run_device.deal_to_gpus(names, 4)
    slow = [sum(1 for n, g in dealt.items() if g == gpu and names[n][0] in run_device.SLOW) for gpu in range(4)]
    assert sorted(slow) == [1, 1, 2, 2] and len(dealt) == 10
    fast = {dealt[n] for n in names if names[n][0] not in run_device.SLOW}
    assert all(slow[g] == 1 for g in fast)  # the windowed runs join the GPUs with one slow run
    assert run_device.deal_to_gpus(names, 0) == {}


def test_render_suite_writes_the_librarys_records_and_only_the_16x_video(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/render_suite.py"), str(tmp_path / "suite"), "--train", "1",
           "--eval", "1", "--procs", "1"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "suite" / "eval.jsonl").read_text().splitlines()]
    expected = [r for recs in iter_scene_records(HELD_OUT_SEED, 1, tmp_path / "lib") for r in recs]
    assert rows == expected and [r["length"] for r in rows] == ["16x", "4x", "1x"]
    assert sorted(p.name for p in (tmp_path / "suite" / "videos").iterdir()) == ["0000000_16x.mp4", "1000000_16x.mp4"]
    assert "train.jsonl: 3 records of 1 scenes (seeds 0..0)" in result.stdout
    # --near: the library's near records for training, the same held-out records, still only the 16x videos
    result = subprocess.run([*cmd[:2], str(tmp_path / "near"), *cmd[3:], "--near", "1"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    near = [json.loads(line) for line in (tmp_path / "near" / "train.jsonl").read_text().splitlines()]
    assert near == [r for recs in iter_scene_records(0, 1, tmp_path / "lib", near=1.0) for r in recs]
    assert [r.get("near", False) for r in near] == [True, True, True]
    assert (tmp_path / "near" / "eval.jsonl").read_text() == (tmp_path / "suite" / "eval.jsonl").read_text()
    assert sorted(p.name for p in (tmp_path / "near" / "videos").iterdir()) == ["0000000_16x.mp4", "1000000_16x.mp4"]
    assert "train.jsonl: 3 records of 1 scenes (seeds 0..0), 3 near" in result.stdout


def test_run_device_cuts_the_near_clips_from_the_16x_video_by_the_librarys_rule(tmp_path, monkeypatch):
    """to_frames with a stand-in for OpenCV (not installed here): each 'frame' is its index in the walk."""
    import types

    import numpy as np

    from spatial_ttt.data.memory_tasks import NEAR_FRAMES, STRIDES

    written: dict[str, list[int]] = {}

    class Capture:
        def __init__(self, path: str) -> None:
            self.frames = iter(range(256))

        def read(self):
            i = next(self.frames, None)
            return (i is not None), (None if i is None else np.full((1,), i))

    def imwrite(path: str, frame) -> None:
        written.setdefault(str(Path(path).parent.name), []).append(int(frame[0]))

    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(VideoCapture=Capture, imwrite=imwrite))
    run_device = _module("run_device")
    monkeypatch.setattr(run_device, "Pool", _SerialPool)
    data = tmp_path / "data"
    (data / "videos").mkdir(parents=True)
    for seed in ("0000000", "1000000"):
        (data / "videos" / f"{seed}_16x.mp4").write_bytes(b"")
    train = [{"id": "0000000-16x-near", "video": ["videos/0000000_16x_near.mp4"] * 4, "length": "16x", "near": True,
              "tasks": [], "conversations": []},
             {"id": "0000000-4x", "video": "videos/0000000_4x.mp4", "length": "4x", "tasks": [], "conversations": []},
             {"id": "0000000-1x-near", "video": ["videos/0000000_1x_near.mp4"] * 4, "length": "1x", "near": True,
              "tasks": [], "conversations": []}]
    held_out = [{"id": "1000000-16x", "video": "videos/1000000_16x.mp4", "length": "16x", "tasks": [], "conversations": []}]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (data / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    run_device.to_frames(data, tmp_path / "work")
    assert sorted(written) == sorted([f"{s}_{length}" for s in ("0000000", "1000000") for length in STRIDES]
                                     + ["0000000_16x_near", "0000000_1x_near"])
    assert written["0000000_16x_near"] == list(range(NEAR_FRAMES))
    assert written["0000000_1x_near"] == list(range(0, 16 * NEAR_FRAMES, 16))
    assert written["0000000_4x"] == list(range(0, 256, 4)) and written["1000000_16x"] == list(range(256))
    rows = [json.loads(line) for line in (tmp_path / "work" / "train.jsonl").read_text().splitlines()]
    assert [r["video"] for r in rows] == [["frames/0000000_16x_near"] * 4, "frames/0000000_4x", ["frames/0000000_1x_near"] * 4]
    assert json.loads((tmp_path / "work" / "eval.jsonl").read_text())["video"] == "frames/1000000_16x"


class _SerialPool:
    """multiprocessing.Pool's context-manager and map, in this process (so the OpenCV stand-in applies)."""

    def __init__(self, processes: int | None = None) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def map(self, fn, jobs, chunksize: int = 1):
        return [fn(job) for job in jobs]


def test_step_cost_times_every_variant_and_batch_on_the_cpu(tmp_path):
    out = tmp_path / "cost.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/step_cost.py"), str(out), "--variants", "ttt_all", "full",
           "--kernels", "reference", "--batches", "1", "2", "--tokens", "40", "--repeats", "1",
           "--inductor", "cpp_wrapper=True", "--chunks-per-call", "1", "4"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["inductor"] == {"cpp_wrapper": "True"}
    # chunks per call for the TTT variant only (the full-attention model has no fast weights)
    assert [(r["variant"], r["kernel"], r["chunks_per_call"], r["batch"]) for r in data["rows"]] == [
        ("ttt_all", "reference", 1, 1), ("ttt_all", "reference", 1, 2), ("ttt_all", "reference", 4, 1),
        ("ttt_all", "reference", 4, 2), ("full", "reference", 1, 1), ("full", "reference", 1, 2)]
    for row in data["rows"]:
        # tokens_per_s comes from the unrounded median; step_s is rounded to 0.1 ms
        assert row["step_s"] > 0 and abs(row["tokens_per_s"] * row["step_s"] / (row["batch"] * 40) - 1) < 0.01


def test_chunk_calls_counts_the_compiled_calls_of_a_training_forward(tmp_path):
    """513 tokens of chunk 128: 4 updating chunks in each of the 4 TTT layers, 2 calls each at G = 2 (aot_eager:
    dynamo without code generation)."""
    out = tmp_path / "calls.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/chunk_calls.py"), str(out), "--groups", "2", "--tokens",
           "513", "--steps", "2", "--operator-chunks", "4", "--backend", "aot_eager"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["device"] == "cpu" and data["backend"] == "aot_eager"
    (model,), (operator,) = data["model"], data["operator"]
    assert (model["group"], model["compiled_calls_forward"]) == (2, 4 * 2) and model["step_s"] > 0
    assert operator["chunks"] == 4 and 0 < operator["forward_ms_per_chunk"] < operator["fwd_bwd_ms_per_chunk"]


def test_evidence_configs_differ_only_in_their_variant_lines():
    expected = {  # variant: (ttt_layers, ttt_branch, use_conv_layer)
        "ttt_all": ([0, 1, 2, 3], True, True), "swa_all": ([0, 1, 2, 3], False, True),
        "hybrid": ([0, 1, 2], True, True), "swa": ([0, 1, 2], False, True),
        "noconv": ([0, 1, 2], True, False), "full": ([], True, True),
    }
    run_device = _module("run_device")
    assert set(run_device.VARIANTS) == set(expected)

    def shared_lines(variant: str) -> list[str]:
        text = (ROOT / "configs" / f"evidence_{variant}.yaml").read_text().splitlines()
        return [line for line in text if not line.startswith(("#", "output_dir:")) and "# variant" not in line]

    for variant, (layers, branch, conv) in expected.items():
        settings = load_config(ROOT / "configs" / f"evidence_{variant}.yaml").model_settings
        assert (settings["ttt_layers"], settings["ttt_branch"], settings["use_conv_layer"]) == (layers, branch, conv)
        assert settings["ttt_kernel"] == "auto"
        assert shared_lines(variant) == shared_lines("hybrid"), variant


def test_step_cost_times_real_packs_of_a_rendered_suite(tmp_path):
    """--data: the trainer's step on real packs (videos, padded rows), data encoded beforehand."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    suite = tmp_path / "suite"
    subprocess.run([sys.executable, "-m", "spatial_ttt.data.memory_tasks", str(suite), "--train", "1", "--eval", "1"],
                   env=env, check=True, capture_output=True, timeout=300)
    out = tmp_path / "cost.json"
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/step_cost.py"), str(out), "--variants", "swa_all",
           "--kernels", "reference", "--batches", "1", "--tokens", "40", "--repeats", "1", "--data", str(suite),
           "--packs", "1", "--profile"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    real = [r for r in json.loads(out.read_text())["rows"] if r.get("data")]
    # one scene: its 16x, 4x and 1x streams fit one 16k-token pack
    assert len(real) == 1 and real[0]["packs"] == 1 and real[0]["streams"] == 3
    assert real[0]["step_s"] > 0 and abs(real[0]["tokens_per_s"] * real[0]["step_s"] / real[0]["tokens"] - 1) < 0.01
    assert real[0]["encode_s"] > 0 and len(real[0]["first_round_s"]) == len(real[0]["second_round_s"]) == 1
    assert real[0]["kernels"] == 0 and "aten::" in real[0]["top_cpu"]  # the CPU has no kernels; its ops are listed


def test_loss_table_compares_runs_at_equal_steps(tmp_path):
    """Mean logged loss over the window ending at each step; '-' where a run had not got there."""
    import io
    import tarfile

    logs = {"ttt_all-s1": [(10, 4.0), (20, 2.0), (30, 1.0)], "swa_all-s1": [(10, 3.0), (20, 1.0)]}
    path = tmp_path / "logs.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, rows in logs.items():
            text = "training ...\n" + "".join(json.dumps({"step": s, "loss": l}) + "\n" for s, l in rows)
            info = tarfile.TarInfo(f"{name}.log")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/loss_table.py"), str(path), "--at", "20", "30", "--window", "20"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[2:] == ["| swa_all-s1 | 2.000 | - |", "| ttt_all-s1 | 3.000 | 1.500 |"]


def test_recall_rows_bind_each_queried_key_to_its_value_at_the_stated_distance():
    import torch

    recall = _module("recall")
    ids, target, distance = recall.recall_rows(3, 96, 4, torch.Generator().manual_seed(0))
    assert ids.shape == target.shape == distance.shape == (3, 96)
    assert target.sum(dim=1).tolist() == [4, 4, 4] and bool((distance[~target] == 0).all())
    for row, marks, far in zip(ids, target, distance):
        for at in marks.nonzero().flatten().tolist():
            key, value, pair = row[at], row[at + 1], at - far[at]
            assert int(key) in recall.KEYS and int(value) in recall.VALUES
            assert (row[pair], row[pair + 1]) == (key, value) and pair + 1 < 96 - 8  # bound before the queries
        assert len(set(row[88::2].tolist())) == 4  # four distinct keys queried, at the end
    _, near, distance = recall.recall_rows(3, 96, 4, torch.Generator().manual_seed(0), near=1.0)
    assert set(distance[near].tolist()) <= set(range(2, 16, 2))  # the pairs right before the queries


def test_recall_trains_and_scores_on_the_cpu(tmp_path):
    recall = _module("recall")
    out = tmp_path / "recall.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/recall.py"), str(out), "--variant", "ttt_all",
           "--steps", "2", "--length", "160", "--pairs", "2", "--batch", "2", "--near", "0.5", "--eval-rows", "8", "--log-every", "1",
           "--bins", "0,16,64", "--eval-every", "1"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [e["step"] for e in data["log"]] == [1, 2] and data["chance"] == 1 / 64
    assert sum(b["answers"] for b in data["held_out"].values()) == 16  # 8 rows x 2 queries
    assert set(data["held_out"]) <= {"0-16", "16-64", "64-end"}
    assert [c["step"] for c in data["held_out_curve"]] == [1]  # the last step is scored once, as held_out
    assert sum(b["answers"] for b in data["held_out_curve"][0].values() if isinstance(b, dict)) == 16
    assert recall.distance_bins("0,128,512") == [(0, 128), (128, 512), (512, 1 << 30)]
    with pytest.raises(ValueError, match="increasing edges"):
        recall.distance_bins("0,64,32")
    assert all(0 <= b["accuracy"] <= 1 for b in data["held_out"].values())


def test_recall_report_tables_mean_spread_and_the_equal_step_comparison(tmp_path):
    def scores(far: float) -> dict:
        return {"0-64": {"accuracy": 0.1, "answers": 10}, "256-end": {"accuracy": far, "answers": 10}}

    def run(seed: int, variant: str, steps: int, far: float, curve: list[tuple[int, float]]) -> None:
        data = {"steps_done": steps, "chance": 1 / 64, "held_out": scores(far),
                "held_out_curve": [{"step": s, **scores(a)} for s, a in curve]}
        (tmp_path / f"{variant}-s{seed}.json").write_text(json.dumps(data))

    run(1, "swa_all", 400, 0.02, [(200, 0.01)])
    run(2, "swa_all", 400, 0.04, [(200, 0.03)])
    run(1, "ttt_all", 200, 0.06, [])
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/recall_report.py"), str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[2:5] == ["| swa_all | 2 | 400/400 | 10.0 ± 0.0 | 3.0 ± 1.0 |",
                        "| ttt_all | 1 | 200 | 10.0 ± 0.0 | 6.0 ± 0.0 |",
                        "| chance | - | - | 1.6 | 1.6 |"]
    assert "At step 200 (every run):" in out  # the largest step all three runs scored
    assert "| swa_all | 2 | 10.0 ± 0.0 | 2.0 ± 1.0 |" in out and "| ttt_all | 1 | 10.0 ± 0.0 | 6.0 ± 0.0 |" in out


def test_step_cost_unpacks_a_rendered_suite_whose_clips_are_cut_from_the_16x_video(tmp_path, monkeypatch):
    """render_suite.py writes only the 16x video per scene (near clips and shorter lengths are cut on the device):
    step_cost's --data unpacks such a folder with run_device's rule; a folder with every video is used as it is."""
    import types

    step_cost = _module("step_cost")
    unpacked = []
    monkeypatch.setitem(sys.modules, "run_device", types.SimpleNamespace(
        to_frames=lambda data, frames: unpacked.append((data, frames))))
    data = tmp_path / "suite"
    (data / "videos").mkdir(parents=True)
    (data / "videos" / "0000000_16x.mp4").write_bytes(b"")
    record = {"id": "0000000-16x", "video": "videos/0000000_16x.mp4", "conversations": []}
    (data / "train.jsonl").write_text(json.dumps(record) + "\n")
    assert step_cost.usable_data(data, tmp_path / "work") == data and unpacked == []
    near = {"id": "0000000-16x-near", "video": ["videos/0000000_16x_near.mp4"] * 4, "conversations": []}
    (data / "train.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(near) + "\n")
    assert step_cost.usable_data(data, tmp_path / "work") == tmp_path / "work" / "data"
    assert unpacked == [(data, tmp_path / "work" / "data")]


def test_report_tables_say_how_many_steps_a_run_skipped():
    """A run whose trainer skipped non-finite steps says so beside its step count (study 7's NaN runs did not)."""
    tables = _module("report").tables
    accuracy = {length: {task: 0.5 for task in ("first", "order", "count", "room_size", "all")}
                for length in ("1x", "4x", "16x")}
    history = [{"step": 1, "loss": 1.0}, {"step": 2, "loss": float("nan"), "skipped": True}, {"step": 3, "loss": 0.9}]
    results = {"ttt_all-s1": {"steps": 3, "accuracy": accuracy, "history": history},
               "ttt_all-s2": {"steps": 3, "accuracy": accuracy, "history": history[:1] + history[2:]},
               "swa_all-s1": {"steps": 3, "accuracy": accuracy, "history": history[:1]}}
    text = tables(results)
    assert "| TTT everywhere, no anchor | 2 | 3/3 (skipped 1/0) | 50.0 ± 0.0 |" in text
    assert "| windowed attention only, no anchor | 1 | 3 | 50.0 ± 0.0 |" in text


def test_paired_differences_average_seeds_per_record_and_bound_the_mean():
    paired = _module("paired")

    def run(correct: list[int]) -> dict:
        return {"rows": [{"id": i, "length": "4x", "task": "room_size" if i < 2 else "first", "correct": c}
                         for i, c in enumerate(correct)]}

    # records 0-3; a (two seeds) averages to [1, 0.5, 0, 1], b to [0, 0, 0, 1]: differences [1, 0.5, 0, 0]
    results = {"ttt_all-s1": run([1, 1, 0, 1]), "ttt_all-s2": run([1, 0, 0, 1]), "swa_all-s1": run([0, 0, 0, 1])}
    rows = {r["task"]: r for r in paired.paired_table(results, "ttt_all", "swa_all", samples=400)}
    assert set(rows) == {"first", "room_size", "all"} and rows["all"]["records"] == 4
    assert rows["room_size"]["diff"] == 75.0 and rows["first"]["diff"] == 0.0 and rows["all"]["diff"] == 37.5
    assert 0.0 <= rows["all"]["low"] <= 37.5 <= rows["all"]["high"] <= 100.0
    assert rows["first"]["low"] == rows["first"]["high"] == 0.0  # no variation, no interval
    with pytest.raises(SystemExit, match="no runs of 'full'"):
        paired.paired_table(results, "full", "swa_all")
    with pytest.raises(SystemExit, match="different records"):
        paired.paired_table({**results, "swa_all-s2": run([0, 0, 0, 1, 1])}, "ttt_all", "swa_all")


def test_score_cpu_scores_the_shipped_model_on_held_out_walks(tmp_path):
    from spatial_ttt.demo import embedded_model_folder
    from spatial_ttt.eval.memory_suite import accuracy_table

    rows = [{"length": "1x", "task": "first", "correct": True}, {"length": "1x", "task": "first", "correct": False},
            {"length": "1x", "task": "count", "correct": True}, {"length": "4x", "task": "count", "correct": False}]
    assert accuracy_table(rows) == {"1x": {"first": 0.5, "count": 1.0, "all": 2 / 3}, "4x": {"count": 0.0, "all": 0.0}}

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/score_cpu.py"), str(embedded_model_folder()), "--scenes", "1",
           "--lengths", "1x", "--out", str(tmp_path / "scores.json")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((tmp_path / "scores.json").read_text())[str(embedded_model_folder())]
    assert len(scores["rows"]) == 4 and {r["task"] for r in scores["rows"]} == {"first", "order", "count", "room_size"}
    right = sum(r["correct"] for r in scores["rows"])
    assert scores["accuracy"]["1x"]["all"] == right / 4
    assert f"| evidence_model | 1x | " in result.stdout and f"{100 * right / 4:.1f} |" in result.stdout


def test_score_cpu_fills_in_the_runs_of_an_unscored_study(tmp_path):
    """run_device.py --no-score brings models back unscored; score_cpu.py --results gives each run, found by its
    folder's name, the accuracy and answers scored here, and refuses a folder that names no run."""
    from spatial_ttt.demo import embedded_model_folder

    (tmp_path / "hybrid-s1").symlink_to(embedded_model_folder(), target_is_directory=True)
    study = {"hybrid-s1": {"steps": 500, "history": [{"step": 1, "loss": 6.2}], "accuracy": None, "rows": None},
             "hybrid-s2": {"steps": 500, "history": [], "accuracy": None, "rows": None}}
    (tmp_path / "results.json").write_text(json.dumps(study))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    base = [sys.executable, str(ROOT / "benchmarks/evidence/score_cpu.py"), "--scenes", "1", "--lengths", "1x",
            "--results", str(tmp_path / "results.json"), "--out", str(tmp_path / "scored.json")]
    refused = subprocess.run([*base, str(embedded_model_folder())], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "no run named evidence_model" in refused.stderr
    assert not (tmp_path / "scored.json").exists()
    result = subprocess.run([*base, str(tmp_path / "hybrid-s1")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scored = json.loads((tmp_path / "scored.json").read_text())
    assert scored["hybrid-s2"] == study["hybrid-s2"]  # not given a model: left as it was
    run = scored["hybrid-s1"]
    assert run["steps"] == 500 and run["history"] == study["hybrid-s1"]["history"] and run["scored_on"] == "cpu"
    assert len(run["rows"]) == 4 and run["accuracy"]["1x"]["all"] == sum(r["correct"] for r in run["rows"]) / 4


def test_an_unscored_study_brings_every_finished_model_back(tmp_path):
    """run_device.py --no-score: each finished run's model folder comes back in models_N.tar.gz; a chained run
    still training is listed in progress.json and has no archive."""
    import tarfile

    run_device = _module("run_device")
    work, out = tmp_path / "work", tmp_path / "out"
    procs = {}
    for name, finished in (("hybrid-s1", True), ("noconv-s1", False)):
        run = work / "runs" / name
        checkpoint = run / "run" / "checkpoint-500"
        checkpoint.mkdir(parents=True)
        (checkpoint / "config.json").write_text("{}")
        (checkpoint / "model.safetensors").write_bytes(b"weights")
        (checkpoint / "optimizer.pt").write_bytes(b"not a model file")
        (run / "stdout.log").write_text("trained\n")
        if finished:
            (run / "result.json").write_text(json.dumps({"steps": 500, "checkpoint": str(checkpoint), "accuracy": None}))
        else:
            (run / "progress.json").write_text(json.dumps({"steps": 320}))
        procs[name] = (subprocess.Popen([sys.executable, "-c", "pass"]), run)
    out.mkdir()
    run_device.wait_attached({name: proc for name, (proc, _) in procs.items()}, deadline=0.0)
    run_device.collect({name: run for name, (_, run) in procs.items()}, 500, start=0.0, work=work, out=out, scored=False)
    assert sorted(p.name for p in out.iterdir()) == ["logs.tar.gz", "models_1.tar.gz", "progress.json", "results.json"]
    with tarfile.open(out / "models_1.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["hybrid-s1/config.json", "hybrid-s1/model.safetensors"]
    assert json.loads((out / "progress.json").read_text()) == {"noconv-s1": {"steps": 320}}
    assert list(json.loads((out / "results.json").read_text())) == ["hybrid-s1"]


def test_model_archives_stay_under_the_limit_with_as_few_files_as_fit(tmp_path):
    """Six 5.7 MB runs (the evidence models) in archives of at most 15 MiB of model files: three archives of two
    runs, which with results.json, progress.json and logs.tar.gz fit the device's 8 files; a run over the limit
    goes alone; every run's files come back under its own name."""
    import tarfile

    run_device = _module("run_device")

    def model(name: str, size: int) -> Path:
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(bytes(size))
        (folder / "optimizer.pt").write_bytes(bytes(1000))  # not a model file: neither counted nor packed
        return folder

    runs = {f"{v}-s{s}": model(f"{v}-s{s}", 5_742_712) for v in ("hybrid", "swa", "full") for s in (1, 2)}
    out = tmp_path / "out"
    out.mkdir()
    paths = run_device.archive_in_parts(runs, out)
    assert [p.name for p in paths] == ["models_1.tar.gz", "models_2.tar.gz", "models_3.tar.gz"]
    packed = {}
    for path in paths:
        assert path.stat().st_size < 16 * 2**20
        with tarfile.open(path) as tar:
            packed[path.name] = sorted(tar.getnames())
    assert packed["models_1.tar.gz"] == ["hybrid-s1/config.json", "hybrid-s1/model.safetensors",
                                         "hybrid-s2/config.json", "hybrid-s2/model.safetensors"]
    assert sum(len(names) for names in packed.values()) == 12
    big = run_device.archive_in_parts({"a": model("a", 30), "b": model("b", 200), "c": model("c", 30)}, tmp_path, limit=100)
    with tarfile.open(big[1]) as tar:
        assert [p.name for p in big] == ["models_1.tar.gz", "models_2.tar.gz", "models_3.tar.gz"]
        assert sorted(tar.getnames()) == ["b/config.json", "b/model.safetensors"]


def test_freeze_memory_keeps_every_fast_weight_at_its_start(tmp_path):
    """freeze_memory.py: after a prompt of several chunks the frozen copy's fast weights are still the learnt
    initial ones (the model's own have moved), and the first chunk, answered before any update, is unchanged
    (without the spatial conv, which lets a frame's tokens see the next frame's)."""
    import torch

    from spatial_ttt.checkpoint import load_model, save_model
    from spatial_ttt.tiny import tiny_model

    from tests.core.helpers import video_prompt

    model = tiny_model(lact_chunk_size=8, use_conv_layer=False).eval()
    save_model(model, tmp_path / "model")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "benchmarks/evidence/freeze_memory.py"), str(tmp_path / "model"), str(tmp_path / "frozen")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(model.config.ttt_layers)} TTT layers with zero update rates" in result.stdout
    frozen = load_model(tmp_path / "frozen").eval()
    inputs = video_prompt(frames_groups=2, grid_hw=4)  # 22 tokens: two updates of 8
    with torch.no_grad():
        states = [m.new_state(1) for m in (model, frozen)]
        logits = [m(**inputs, state=s).logits for m, s in zip((model, frozen), states)]
    torch.testing.assert_close(logits[1][:, :8], logits[0][:, :8])  # the first chunk: no update has happened yet
    assert (logits[1][:, -1] - logits[0][:, -1]).abs().max() > 1e-3
    layers = [(state, layer.self_attn.initial_weights(1)) for state, layer in
              zip(states[1].layers, frozen.model.language_model.layers) if layer.is_ttt]
    for state, initial in layers:  # only the renormalisation's 1e-5 per update moves them
        for now, start in zip((state.ttt.weights.w0, state.ttt.weights.w1, state.ttt.weights.w2), initial[:3]):
            torch.testing.assert_close(now, start, rtol=1e-4, atol=1e-4)
    for state, layer in zip(states[0].layers, model.model.language_model.layers):
        if layer.is_ttt:
            assert (state.ttt.weights.w0 - layer.self_attn.initial_weights(1).w0).abs().max() > 1e-3
    for name, settings in (("plain", {"ttt_layers": []}), ("branch_off", {"ttt_branch": False})):
        save_model(tiny_model(**settings), tmp_path / name)
        result = subprocess.run([*cmd[:2], str(tmp_path / name), str(tmp_path / f"{name}_out")], env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1 and "nothing to freeze" in result.stderr


FAKE_WORKER = """#!/bin/bash
# stands in for `python worker.py CONFIG SEED RUN_DIR DATA DEADLINE ...`: logs one step, then finishes after
# $FAKE_STEP_S seconds with a result and a model folder
run=$4
echo launched >> "$run/../launches"
mkdir -p "$run/run/checkpoint-500"
echo '{"step": 1, "loss": 6.0}' > "$run/run/log.jsonl"
sleep "$FAKE_STEP_S"
echo '{}' > "$run/run/checkpoint-500/config.json"
echo "{\\"steps\\": 500, \\"checkpoint\\": \\"$run/run/checkpoint-500\\"}" > "$run/result.json"
"""


def test_detached_runs_outlive_their_call_and_are_collected_once_done(tmp_path, monkeypatch):
    """run_device.py --detach: a run is launched in a session of its own and left running past the call's budget
    (reported in progress.json as running, with its last logged step); a later call launches nothing again and
    collects the finished run's model."""
    import signal
    import tarfile

    run_device = _module("run_device")
    fake = tmp_path / "fake_worker"
    fake.write_text(FAKE_WORKER)
    fake.chmod(0o755)
    monkeypatch.setattr(run_device.sys, "executable", str(fake))
    monkeypatch.setattr(run_device, "to_frames", lambda data, frames: (frames.mkdir(parents=True, exist_ok=True),
                                                                       (frames / "eval.jsonl").write_text("{}\n")))
    monkeypatch.setattr(run_device, "MARGIN_S", 0.0)
    work = tmp_path / "work"
    argv = ["run_device.py", str(tmp_path), "OUT", "--steps", "500", "--detach", "600", "--no-score",
            "--variants", "hybrid", "--seeds", "1", "--work", str(work), "--budget"]
    monkeypatch.setenv("FAKE_STEP_S", "4")
    argv[2] = str(tmp_path / "call1")
    monkeypatch.setattr(sys, "argv", [*argv, "1"])
    run_device.main()  # returns after 1 s; the run trains on
    run = work / "runs" / "hybrid-s1"
    assert run_device.running(run)
    progress = json.loads((tmp_path / "call1" / "progress.json").read_text())
    assert progress == {"hybrid-s1": {"steps": 1, "running": True}}
    assert json.loads((tmp_path / "call1" / "results.json").read_text()) == {}
    try:
        argv[2] = str(tmp_path / "call2")
        monkeypatch.setattr(sys, "argv", [*argv, "30"])
        run_device.main()  # waits for the run, launches nothing
    finally:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int((run / "pid").read_text()), signal.SIGKILL)
    assert (work / "runs" / "launches").read_text() == "launched\n"
    assert not run_device.running(run)
    assert list(json.loads((tmp_path / "call2" / "results.json").read_text())) == ["hybrid-s1"]
    assert not (tmp_path / "call2" / "progress.json").exists()
    with tarfile.open(tmp_path / "call2" / "models_1.tar.gz") as tar:
        assert tar.getnames() == ["hybrid-s1/config.json"]
