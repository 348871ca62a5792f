"""`spatial-ttt eval` under torchrun: 2 CPU processes on the tiny model give the single-process summary."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from eval_fixtures import write_jsonl

from spatial_ttt.demo import write_synthetic_video

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8")


def _vsibench(root: Path) -> Path:
    for dataset, scene in (("scannet", "s0"), ("arkitscenes", "s1")):
        (root / dataset).mkdir(parents=True)
        write_synthetic_video(root / dataset / f"{scene}.mp4", seconds=0.5, fps=4, size=(48, 64))
    options = ["A. chair", "B. table", "C. sofa", "D. bed"]
    records = [
        {"id": i, "dataset": d, "scene_name": s, "question_type": t, "question": f"Q{i}?", "options": o,
         "ground_truth": g}
        for i, (d, s, t, o, g) in enumerate([
            ("scannet", "s0", "object_counting", None, "2"),
            ("scannet", "s0", "object_rel_direction_easy", options, "A"),
            ("arkitscenes", "s1", "room_size_estimation", None, "20"),
            ("arkitscenes", "s1", "route_planning", options, "B"),
        ])
    ]  # fmt: skip
    write_jsonl(root / "test.jsonl", records)
    return root


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_two_processes_give_the_single_process_summary(tiny_folder, tmp_path):
    data = _vsibench(tmp_path / "VSI-Bench")
    single = _run(["-m", "spatial_ttt", "eval", "vsibench", "--data", str(data), "--model", str(tiny_folder),
                   "--out", str(tmp_path / "single")])  # fmt: skip
    assert single.returncode == 0, single.stderr

    # the docs' command, on this machine's CPU (the default device without a GPU)
    (command,) = [b for b in re.findall(r"```bash\n(.*?)```", DOCS, re.DOTALL) if "torchrun" in b]
    command = (
        command.strip()
        .replace("/data/VSI-Bench", str(data))
        .replace("/ckpt/Spatial-TTT-2B", str(tiny_folder))
        .replace("runs/vsibench-2gpu", str(tmp_path / "parallel"))
    )
    assert command.startswith("torchrun ")
    parallel = _run(["-m", "torch.distributed.run", *command.split()[1:]])
    assert parallel.returncode == 0, parallel.stderr[-3000:]

    out = tmp_path / "parallel"
    assert sorted(p.name for p in out.glob("results*.jsonl")) == ["results.rank0.jsonl", "results.rank1.jsonl"]
    assert (out / "summary.json").read_text() == (tmp_path / "single" / "summary.json").read_text()
    by_id = {}
    for path in out.glob("results*.jsonl"):
        by_id.update((r["id"], r) for r in map(json.loads, path.read_text().splitlines()))
    expected = [json.loads(line) for line in (tmp_path / "single" / "results.jsonl").read_text().splitlines()]
    assert [by_id[r["id"]] for r in expected] == expected  # every answer identical, each asked once
    assert json.loads((out / "summary.json").read_text())["n_samples"] == 4


def test_launcher_shard(monkeypatch):
    import pytest

    from spatial_ttt.eval import EvalError
    from spatial_ttt.eval.parallel import launcher_shard

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert launcher_shard() == (0, 1)  # started directly
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert launcher_shard() == (1, 2)
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(EvalError, match="RANK=2 is not below WORLD_SIZE=2"):
        launcher_shard()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(EvalError, match="RANK / WORLD_SIZE set by the launcher are not numbers: 'x', '2'"):
        launcher_shard()
