"""The memory evidence study in one GPU call: every variant x seed trained concurrently on one GPU, then scored.

python benchmarks/evidence/run_device.py DATA_DIR OUT_DIR [--limit 230] [--seeds 1 2] [--variants ...] [--set KEY=VALUE]

DATA_DIR holds train.jsonl / eval.jsonl and videos/ (python -m spatial_ttt.data.memory_tasks). The videos are
first unpacked to PNG frame folders with OpenCV (the device image has no PyAV); records then point at the
folders, which the trainer reads at one frame per second, the rate the videos were written at. Results:
OUT_DIR/results.json (per run: step log, accuracy per length and task, every scored answer) and the best
hybrid model folder as OUT_DIR/best_hybrid.tar.gz (the best run overall too, when it is another variant).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from multiprocessing import Pool
from pathlib import Path

VARIANTS = ("hybrid", "swa", "noconv", "full")
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
               "preprocessor_config.json", "video_preprocessor_config.json", "special_tokens_map.json")


def unpack(args: tuple[str, str]) -> None:
    import cv2

    video, folder = args
    Path(folder).mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(video)
    i = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        cv2.imwrite(f"{folder}/{i:04d}.png", bgr)
        i += 1
    if i == 0:
        raise RuntimeError(f"no frames decoded from {video}")


def to_frames(data: Path, frames: Path) -> None:
    jobs = [(str(v), str(frames / "frames" / v.stem)) for v in sorted((data / "videos").glob("*.mp4"))]
    with Pool(14) as pool:
        pool.map(unpack, jobs, chunksize=8)
    for split in ("train", "eval"):
        rows = [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
        for r in rows:
            r["video"] = "frames/" + Path(r["video"]).stem
        (frames / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--limit", type=float, default=230.0, help="training seconds per run (all run at once)")
    parser.add_argument("--grace", type=float, default=150.0, help="seconds past --limit before a run is killed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training setting KEY=VALUE, for every run")
    parser.add_argument("--work", default="/tmp/evidence")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    to_frames(Path(args.data), work / "data")
    print(f"frames unpacked in {time.perf_counter() - start:.1f}s", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = {}
    for variant in args.variants:
        for seed in args.seeds:
            name = f"{variant}-s{seed}"
            run = work / "runs" / name
            run.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, str(Path(__file__).with_name("worker.py")), f"configs/evidence_{variant}.yaml",
                   str(seed), str(run), str(work / "data"), str(args.limit), *args.overrides]
            procs[name] = (subprocess.Popen(cmd, env=env, stdout=open(run / "stdout.log", "w"), stderr=subprocess.STDOUT), run)
    results = {}
    deadline = time.perf_counter() + args.limit + args.grace
    for name, (proc, run) in procs.items():
        try:
            proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log = (run / "stdout.log").read_text()
        print(f"== {name}: exit {proc.returncode}\n{log[-1500:]}", flush=True)
        if (run / "result.json").exists():
            results[name] = json.loads((run / "result.json").read_text())
    (out / "results.json").write_text(json.dumps(results))
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for name, (_, run) in procs.items():
            tar.add(run / "stdout.log", arcname=f"{name}.log")
    def overall(name: str) -> float:
        acc = results[name]["accuracy"]
        return sum(t["all"] for t in acc.values()) / len(acc)
    ranked = sorted(results, key=overall, reverse=True)
    picks = {"best_hybrid": next((n for n in ranked if n.startswith("hybrid-")), None), "best_overall": ranked[0] if ranked else None}
    for label, name in picks.items():
        if name is None or (label == "best_overall" and name == picks["best_hybrid"]):
            continue
        folder = Path(results[name]["checkpoint"])
        with tarfile.open(out / f"{label}.tar.gz", "w:gz") as tar:
            for f in MODEL_FILES:
                if (folder / f).exists():
                    tar.add(folder / f, arcname=f"{name}/{f}")
    print(json.dumps({"picks": picks, "overall": {n: round(overall(n), 4) for n in ranked},
                      "total_s": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
