"""The memory evidence study in one device call: every variant x seed trained for the same number of steps, then
scored, all runs at once spread over the visible GPUs.

python benchmarks/evidence/run_device.py DATA_DIR OUT_DIR [--budget 540] [--gpus 4] [--seeds 1 2]
    [--variants ttt_all swa_all hybrid full] [--calibrate 12] [--max-steps 4000] [--set KEY=VALUE]
    [--steps S [--chain | --detach SECONDS] [--no-score]]

DATA_DIR holds train.jsonl / eval.jsonl and videos/<seed>_16x.mp4 (benchmarks/evidence/render_suite.py, or
python -m spatial_ttt.data.memory_tasks). Each 16x video is unpacked to PNG frame folders with OpenCV (the device
image has no PyAV), every frame for 16x, every 4th for 4x and every 16th for 1x; records then point at the
folders, which the trainer reads at one frame per second, the rate the videos were written at. Near training records
(render_suite.py --near, the curriculum) get their clip's folder too, cut by the same rule
(memory_tasks.stream_frames).

Equal steps, set from measured step times: every run first trains --calibrate throwaway steps (worker.py), then
the slowest run's step time and the time left before --budget seconds (evaluation included) set the step count S,
the same for every run, and every run trains a fresh model for S steps with its learning-rate schedule made
for S. Results: OUT_DIR/results.json (per run: calibration, step log, accuracy per length and task, every scored
answer), OUT_DIR/logs.tar.gz, and the best run's model folder as OUT_DIR/best.tar.gz (and the best
``ttt_all`` run's as OUT_DIR/best_ttt_all.tar.gz when that is another run). With --no-score (needs --steps) the runs
only train: DATA_DIR may lack the held-out videos (the carried tree is limited), and every finished run's model
folder comes back in OUT_DIR/models_N.tar.gz (as RUN/..., several runs per archive, each archive under the device's
16 MiB per file, so that six runs and the results fit its 8 files), to be scored with score_cpu.py --results
OUT_DIR/results.json.

With --detach SECONDS (needs --steps) each run is one process in a session of its own (``setsid``), which
outlives the call and trains until done or SECONDS from its start, on a machine held by back-to-back calls: no
process restarts and recompiles per call, as --chain's do. A later call with the same arguments and --work
launches nothing that is already running or done; it waits (until --budget) and collects what has finished.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from multiprocessing import Pool
from pathlib import Path

from spatial_ttt.data.memory_tasks import STRIDES, stream_frames
from spatial_ttt.files import atomic_write_json, atomic_write_text
from spatial_ttt.layouts import PROCESSOR_FILES, WEIGHTS_NAME

VARIANTS = ("ttt_all", "swa_all", "hybrid", "full", "noconv", "swa")
MODEL_FILES = ("config.json", WEIGHTS_NAME, *PROCESSOR_FILES)  # what a model folder needs, no training state
MARGIN_S = 25.0  # after the last evaluation: results, archives
ARCHIVE_BYTES = 15 * 2**20  # model files per models_N.tar.gz, uncompressed (weights hardly compress): < 16 MiB
# The real run compiles again, from the cache the calibration filled: on 4 H100s the first TTT step took 6.7 s
# after 105 s in calibration (benchmarks/EVIDENCE.md). Charging the cold compilation twice left 20 steps.
RECOMPILE_SHARE = 0.1


def unpack(args: tuple[str, str, list[str]]) -> None:
    """Every frame of a 16x walk video into PNG folders, one per stream length (each length's stride), and one per
    length in ``near`` with that length's near clip."""
    import cv2

    video, prefix, near = args
    cap = cv2.VideoCapture(video)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(bgr)
    if not frames:
        raise RuntimeError(f"no frames decoded from {video}")
    streams = [(f"{prefix}_{length}", stream_frames(length)) for length in STRIDES]
    streams += [(f"{prefix}_{length}_near", stream_frames(length, near=True)) for length in near]
    for folder, cut in streams:
        Path(folder).mkdir(parents=True, exist_ok=True)
        for i, bgr in enumerate(frames[cut]):
            cv2.imwrite(f"{folder}/{i:04d}.png", bgr)


def to_frames(data: Path, frames: Path) -> None:
    splits = {split: [json.loads(line) for line in (data / f"{split}.jsonl").read_text().splitlines()]
              for split in ("train", "eval")}
    near: dict[str, list[str]] = {}  # scene -> lengths with a near record
    for r in splits["train"]:
        if r.get("near"):
            near.setdefault(r["id"].split("-")[0], []).append(r["length"])
    scenes = [(v, v.stem.removesuffix("_16x")) for v in sorted((data / "videos").glob("*_16x.mp4"))]
    jobs = [(str(v), str(frames / "frames" / scene), near.get(scene, [])) for v, scene in scenes]
    with Pool(min(32, os.cpu_count() or 1)) as pool:
        pool.map(unpack, jobs, chunksize=4)
    for split, rows in splits.items():
        for r in rows:
            videos = [r["video"]] if isinstance(r["video"], str) else r["video"]
            folders = ["frames/" + Path(v).stem for v in videos]
            r["video"] = folders[0] if isinstance(r["video"], str) else folders
        atomic_write_text(frames / f"{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    print(f"near training records: {sum(len(v) for v in near.values())} of {len(splits['train'])}", flush=True)


def equal_steps(calibrations: dict[str, dict], seconds_left: float, eval_records: int, max_steps: int) -> int:
    """The most steps (a multiple of 10) that the slowest run can train and still be scored in ``seconds_left``:
    its setup and (warm) compilation again, then steps at its measured time (plus 15 %), then evaluation."""
    def steps_for(c: dict) -> float:
        overhead = c["setup_s"] + RECOMPILE_SHARE * c["compile_s"] + 1.25 * c["eval_s_per_record"] * eval_records + 25.0
        return (seconds_left - overhead) / (1.15 * c["step_s"])
    steps = min(steps_for(c) for c in calibrations.values())
    return int(min(max_steps, math.floor(steps / 10) * 10))


SLOW = ("ttt_all", "hybrid", "noconv")  # runs with fast weights: launch-bound steps ~20x a windowed model's


def deal_to_gpus(names: dict[str, tuple[str, int]], gpus: int) -> dict[str, int]:
    """GPU per run: the runs with fast weights spread first, then the fast ones onto the least loaded GPUs."""
    if gpus <= 0:
        return {}
    load = [0.0] * gpus
    dealt = {}
    for name in sorted(names, key=lambda n: names[n][0] not in SLOW):
        gpu = min(range(gpus), key=lambda g: load[g])
        dealt[name] = gpu
        load[gpu] += 1.0 if names[name][0] in SLOW else 0.1
    return dealt


def overall(result: dict) -> float:
    acc = result["accuracy"]
    return sum(t["all"] for t in acc.values()) / len(acc)


def model_files(folder: Path) -> list[Path]:
    return [folder / f for f in MODEL_FILES if (folder / f).exists()]


def archive(folders: dict[str, Path], path: Path) -> None:
    """``path`` (.tar.gz) holding each run's model files as RUN/FILE."""
    with tarfile.open(path, "w:gz") as tar:
        for name, folder in folders.items():
            for f in model_files(folder):
                tar.add(f, arcname=f"{name}/{f.name}")


def archive_in_parts(folders: dict[str, Path], out: Path, limit: int = ARCHIVE_BYTES) -> list[Path]:
    """The runs' model files in as few OUT/models_N.tar.gz as hold at most ``limit`` bytes of them each (in order;
    a run larger than ``limit`` alone in its own)."""
    parts: list[dict[str, Path]] = []
    size = 0
    for name, folder in folders.items():
        run_bytes = sum(f.stat().st_size for f in model_files(folder))
        if not parts or size + run_bytes > limit:
            parts.append({})
            size = 0
        parts[-1][name] = folder
        size += run_bytes
    paths = [out / f"models_{i}.tar.gz" for i in range(1, len(parts) + 1)]
    for part, path in zip(parts, paths):
        archive(part, path)
    return paths


def wait_attached(procs: dict[str, subprocess.Popen], deadline: float) -> None:
    """Waits for every run's process; one still running 10 s past the deadline is killed."""
    for proc in procs.values():
        try:
            proc.wait(timeout=max(1.0, deadline + 10 - time.time()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def running(run: Path) -> bool:
    """Whether the detached process recorded in RUN/pid is alive (and not a zombie of this process)."""
    try:
        pid = int((run / "pid").read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0]:  # launched by this call and exited: reap it
            return False
    return True


def wait_detached(runs: dict[str, Path], deadline: float, poll_s: float = 5.0) -> None:
    """Waits until no detached run is still training, or the deadline (the runs go on training after it)."""
    while any(running(run) for run in runs.values()) and time.time() < deadline:
        time.sleep(max(0.0, min(poll_s, deadline - time.time())))


def last_step(run: Path) -> int:
    """The last step a run logged (RUN/run/log.jsonl), 0 before its first."""
    log = run / "run" / "log.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    return json.loads(lines[-1])["step"] if lines else 0


def collect(runs: dict[str, Path], steps: int, start: float, work: Path, out: Path, scored: bool = True) -> None:
    """Writes results.json (finished runs), progress.json (the others), logs.tar.gz and the model archives."""
    results, progress = {}, {}
    for name, run in runs.items():
        log = (run / "stdout.log").read_text()
        print(f"== {name}\n{log[-1200:]}", flush=True)
        if (run / "result.json").exists():
            results[name] = json.loads((run / "result.json").read_text())
        elif (run / "progress.json").exists():  # a chained run: the next call resumes it
            progress[name] = json.loads((run / "progress.json").read_text())
        else:  # a detached run still training (or one that failed: its log says)
            progress[name] = {"steps": last_step(run), "running": running(run)}
    atomic_write_json(out / "results.json", results)
    if progress:
        atomic_write_json(out / "progress.json", progress)
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        for name, run in runs.items():
            tar.add(run / "stdout.log", arcname=f"{name}.log")
        for failed in (work / "runs").glob("*-failed.log"):
            tar.add(failed, arcname=failed.name)
    if not scored:
        archive_in_parts({name: Path(res["checkpoint"]) for name, res in results.items()}, out)
        print(json.dumps({"equal_steps": steps, "finished": sorted(results),
                          "unfinished": {n: p["steps"] for n, p in progress.items()},
                          "total_s": round(time.time() - start, 1)}), flush=True)
        return
    ranked = sorted(results, key=lambda n: overall(results[n]), reverse=True)
    if ranked:
        archive({ranked[0]: Path(results[ranked[0]]["checkpoint"])}, out / "best.tar.gz")
        best_ttt = next((n for n in ranked if n.startswith("ttt_all-")), None)
        if best_ttt not in (None, ranked[0]):
            archive({best_ttt: Path(results[best_ttt]["checkpoint"])}, out / "best_ttt_all.tar.gz")
    print(json.dumps({"equal_steps": steps, "overall": {n: round(overall(results[n]), 4) for n in ranked},
                      "unfinished": {n: p["steps"] for n, p in progress.items()},
                      "total_s": round(time.time() - start, 1)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for everything, from this start")
    parser.add_argument("--gpus", type=int, default=1, help="runs are dealt to GPUs 0..gpus-1 in turn")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--variants", nargs="+", default=["ttt_all", "swa_all", "hybrid", "full", "noconv"], choices=VARIANTS)
    parser.add_argument("--calibrate", type=int, default=12, help="throwaway steps timed per run")
    parser.add_argument("--steps", type=int, help="train every run for exactly this many steps, no calibration (e.g. "
                        "to add variants to a study at its step count)")
    parser.add_argument("--max-steps", type=int, default=4000)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="training setting KEY=VALUE, for every run")
    parser.add_argument("--work", default="/tmp/evidence")
    parser.add_argument("--chain", action="store_true", help="with --steps: runs span calls on one warm machine, "
                        "resuming from their checkpoints under --work (which must survive between calls)")
    parser.add_argument("--no-score", action="store_true", help="with --steps: train only; each finished run's "
                        "model folder comes back in OUT_DIR/models_N.tar.gz, for score_cpu.py --results")
    parser.add_argument("--detach", type=float, metavar="SECONDS", help="with --steps: runs in sessions of their own "
                        "that outlive the call, each with SECONDS from its start to finish; later calls collect")
    args = parser.parse_args()
    if (args.chain or args.no_score or args.detach) and args.steps is None:
        parser.error("--chain, --no-score and --detach need --steps")
    if args.chain and args.detach:
        parser.error("--chain restarts runs every call; --detach keeps them running: choose one")
    start = time.time()
    deadline = start + args.budget - MARGIN_S
    work, out = Path(args.work), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not ((args.chain or args.detach) and (work / "data" / "eval.jsonl").exists()):  # a later call finds them unpacked
        to_frames(Path(args.data), work / "data")
    eval_records = len((work / "data" / "eval.jsonl").read_text().splitlines())
    print(f"frames unpacked in {time.time() - start:.1f}s", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    names = {f"{variant}-s{seed}": (variant, seed) for seed in args.seeds for variant in args.variants}
    gpus = deal_to_gpus(names, args.gpus)

    def launch(name: str, extra: list[str]) -> tuple[subprocess.Popen, Path]:
        variant, seed = names[name]
        run = work / "runs" / name
        if not args.chain:  # a fresh run (a detached one is launched once: see below)
            shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True, exist_ok=True)
        (run / "progress.json").unlink(missing_ok=True)
        steps = ["--calibrate", str(args.calibrate)] if args.steps is None else [f"max_steps={args.steps}"]
        steps += ["--chain"] if args.chain else []
        steps += ["--no-score"] if args.no_score else []
        run_deadline = start + args.detach if args.detach else deadline
        cmd = [sys.executable, str(Path(__file__).with_name("worker.py")), f"configs/evidence_{variant}.yaml",
               str(seed), str(run), str(work / "data"), str(run_deadline), *steps, *extra]
        gpu = gpus.get(name)
        proc_env = env if gpu is None else {**env, "CUDA_VISIBLE_DEVICES": str(gpu)}
        log = open(run / "stdout.log", "a" if args.chain else "w")  # a chained run's log spans its calls
        proc = subprocess.Popen(cmd, env=proc_env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=bool(args.detach))
        atomic_write_text(run / "pid", str(proc.pid))
        return proc, run

    if args.detach:
        runs = {name: work / "runs" / name for name in names}
        for name, run in runs.items():
            if (run / "result.json").exists() or running(run):
                print(f"== {name}: {'done' if (run / 'result.json').exists() else 'running'}, not launched again", flush=True)
            else:
                launch(name, args.overrides)
        wait_detached(runs, deadline)
        collect(runs, args.steps, start, work, out, scored=not args.no_score)
        return

    def finish(steps: int) -> None:  # attached runs: wait for their processes, then collect
        wait_attached({name: proc for name, (proc, _) in procs.items()}, deadline)
        collect({name: run for name, (_, run) in procs.items()}, steps, start, work, out, scored=not args.no_score)

    procs = {name: launch(name, args.overrides) for name in names}
    if args.steps is not None:
        finish(args.steps)
        return
    # every run calibrates, then all get the same step count; a run whose calibration fails is started once more
    # with the plain PyTorch fast-weight kernel (no compilation), if there is time
    calibrations: dict[str, dict] = {}
    retried: set[str] = set()
    pending = set(procs)
    while pending and time.time() < deadline:
        for name in sorted(pending):
            proc, run = procs[name]
            if (run / "calibration.json").exists():
                calibrations[name] = json.loads((run / "calibration.json").read_text())
                pending.discard(name)
            elif proc.poll() is not None and name not in retried and deadline - time.time() > args.budget / 2:
                print(f"== {name}: calibration failed, retried with ttt_kernel=reference\n"
                      f"{(run / 'stdout.log').read_text()[-3000:]}", flush=True)
                (run.parent / f"{name}-failed.log").write_text((run / "stdout.log").read_text())
                retried.add(name)
                procs[name] = launch(name, [*args.overrides, "model_settings.ttt_kernel=reference"])
            elif proc.poll() is not None:
                pending.discard(name)
        time.sleep(1.0)
    for name, (proc, run) in list(procs.items()):
        if name not in calibrations:  # failed or too slow: left out, said so
            proc.kill()
            proc.wait()
            print(f"== {name}: no calibration, left out\n{(run / 'stdout.log').read_text()[-3000:]}", flush=True)
            del procs[name]
    steps = equal_steps(calibrations, deadline - time.time(), eval_records, args.max_steps) if calibrations else 0
    print(json.dumps({"equal_steps": steps, "at_s": round(time.time() - start, 1),
                      "calibration": {n: {k: v for k, v in c.items() if k != "step_times"} for n, c in calibrations.items()}}), flush=True)
    if steps < 10:
        raise SystemExit("too little time left to train: see the calibration above")
    for _, run in procs.values():
        atomic_write_json(run / "steps.json", {"max_steps": steps})  # polled by the workers
    finish(steps)


if __name__ == "__main__":
    main()
