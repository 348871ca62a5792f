"""The plug-in against the real lmms-eval (CI installs it: .ci/lmms-eval.txt): found through our entry point,
constructed the way lmms-eval constructs models, and run end to end by its CLI on the docs' offline recipe."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from eval_fixtures import load_small_pipeline

from spatial_ttt.eval import run_benchmark
from spatial_ttt.eval.metrics import normalize_answer
from spatial_ttt.pipeline import SpatialTTTPipeline

models = pytest.importorskip("lmms_eval.models", reason="the real lmms-eval is installed by .ci/run")

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")
# the three relative-direction types (lmms-eval's aggregation needs all three) and one numerical type
QUESTION_TYPES = [
    "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard", "object_counting"
]  # fmt: skip


def _construct(model_args: str, device: str | None = None):
    """Exactly how lmms-eval's evaluator builds `--model NAME --model_args ARGS --device DEVICE`."""
    cls = models.get_model("spatial_ttt")
    return cls.create_from_arg_string(model_args, {"batch_size": 1, "max_batch_size": None, "device": device})


def test_found_through_the_entry_point():
    cls = models.get_model("spatial_ttt")
    assert cls.__module__ == "spatial_ttt.eval.lmms_plugin" and cls.__name__ == "SpatialTTTLmms"
    assert "spatial_ttt" in models.MODEL_REGISTRY_V2.list_model_names()


def test_unknown_model_args_are_refused():
    with pytest.raises(ValueError, match=r"^spatial_ttt: unknown model_args sum_room_hint \(known: pretrained, loader"):
        _construct("pretrained=x,loader=eval_fixtures:record_device,sum_room_hint=False")
    with pytest.raises(ValueError, match=r"^spatial_ttt: sum_rooms_hint must be true or false, got 'maybe'"):
        _construct("pretrained=x,loader=eval_fixtures:record_device,sum_rooms_hint=maybe")
    with pytest.raises(ValueError, match=r"^spatial_ttt runs with batch_size=1 only"):
        models.get_model("spatial_ttt").create_from_arg_string("pretrained=x", {"batch_size": 4})


def test_device_and_default_loader(tiny_folder):
    assert _construct("pretrained=p,loader=eval_fixtures:record_device", "cuda:1").model.loaded == ("p", "cuda:1")
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert _construct("pretrained=p,loader=eval_fixtures:record_device").model.loaded == ("p", expected)
    plugin = _construct(f"pretrained={tiny_folder},sum_rooms_hint=False", "cpu")  # no loader: our pipeline
    assert isinstance(plugin.model, SpatialTTTPipeline) and plugin.rooms_hint is False
    assert {p.device.type for p in plugin.model.model.parameters()} == {"cpu"}


def _doc_block(language: str, marker: str) -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOCS, re.DOTALL)
    matching = [b for b in blocks if marker in b]
    assert len(matching) == 1, f"docs/evaluation.md: expected one {language} block with {marker!r}"
    return matching[0]


def _write_video(path: Path) -> None:
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(8):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_docs_offline_recipe_runs_and_matches_our_runner(tiny_folder, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    # The docs' layout: records in a local parquet, videos under $HF_HOME/vsibench/<dataset>/<scene>.mp4.
    hf_home, data = tmp_path / "hf", tmp_path / "hf" / "vsibench"
    _write_video(data / "scannet" / "scene0.mp4")
    records = [
        {
            "id": i, "dataset": "scannet", "scene_name": "scene0", "question_type": t, "question": f"Q{i}: {t}?",
            "options": ["A. chair", "B. table", "C. sofa", "D. bed"] if i < 3 else None,
            "ground_truth": "A" if i < 3 else "3",
        }
        for i, t in enumerate(QUESTION_TYPES)
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(records), data / "test.parquet")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    task_yaml = _doc_block("yaml", "task: vsibench_local")
    task_yaml = task_yaml.replace("/data/VSI-Bench/test.parquet", str(data / "test.parquet"))
    (tasks / "vsibench_local.yaml").write_text(task_yaml)

    command = _doc_block("bash", "lmms-eval --model spatial_ttt").strip()
    command = (
        command.replace("/data/hf", str(hf_home))
        .replace("/ckpt/Spatial-TTT-2B", f"{tiny_folder},loader=eval_fixtures:load_small_pipeline")
        .replace("--device cuda:0", "--device cpu")
        .replace("--include_path tasks", f"--include_path {tasks}")
        .replace("--output_path runs/lmms", f"--output_path {tmp_path / 'out'}")
    )
    env_part, _, cli = command.partition("lmms-eval ")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent), OMP_NUM_THREADS="1")
    env.update(kv.split("=", 1) for kv in env_part.split())
    result = subprocess.run(
        [sys.executable, "-m", "lmms_eval", *cli.split()], capture_output=True, text=True, env=env, timeout=400
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (samples_file,) = (tmp_path / "out").rglob("*_samples_vsibench_local.jsonl")
    samples = sorted((json.loads(line) for line in samples_file.read_text().splitlines()), key=lambda s: s["doc_id"])
    lmms_predictions = [s["vsibench_overall"]["prediction"] for s in samples]

    # Our own runner, same model and records: the same answers (after the reference's unwrap + strip), and
    # for multiple choice the same 0/1 (both score the first token; numbers are parsed differently, see docs).
    torch.set_num_threads(1)
    ours = run_benchmark("vsibench", data, load_small_pipeline(str(tiny_folder), device="cpu"), tmp_path / "ours")
    results = [json.loads(line) for line in (tmp_path / "ours" / "results.jsonl").read_text().splitlines()]
    assert [normalize_answer(r["prediction"]) for r in results] == lmms_predictions
    assert [r["score"] for r in results[:3]] == [s["vsibench_overall"]["accuracy"] for s in samples[:3]]
    assert ours.n_samples == 4 and len(samples) == 4
