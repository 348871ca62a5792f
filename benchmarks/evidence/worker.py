"""One training run of the memory evidence study, then its held-out evaluation (used by run_device.py).

python benchmarks/evidence/worker.py CONFIG SEED RUN_DIR DATA_DIR DEADLINE [--calibrate N | --chain] [KEY=VALUE ...]

Settings: CONFIG, then the KEY=VALUE overrides (e.g. ``model_settings.ttt_kernel=reference``; the configs leave
it at ``auto``: the compiled fast-weight step on a GPU). DEADLINE is a wall-clock time (``time.time()``) by which
the run must have finished, evaluation included.

With ``--calibrate N`` every run first trains N throwaway steps (compilation included), times them and the
scoring of 6 held-out records, writes RUN_DIR/calibration.json and waits for RUN_DIR/steps.json
(``{"max_steps": S}``, written by run_device.py once every run has calibrated: the slowest variant sets S, so
every variant gets the same number of steps). It then trains a fresh model (same seed: same initial weights and
data order) for exactly S steps, with the learning-rate schedule made for S. Should a step take longer than
measured, training stops in time for evaluation and the step count reached is recorded.
Saves the model folder, reloads it in fp32 and scores the held-out streams (DATA_DIR/eval.jsonl).
Writes RUN_DIR/result.json. With ``--no-score`` the run only trains and saves (result.json without accuracy): for
data whose held-out videos did not travel, scored elsewhere with score_cpu.py --results.

With ``--chain`` (and ``max_steps=S``) a run may span several device calls: it resumes from its latest checkpoint
in RUN_DIR/run, and if its S steps cannot be finished and scored before DEADLINE it trains until shortly before
it, saves a checkpoint and writes RUN_DIR/progress.json instead of scoring; the call that finishes scores.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from pathlib import Path

import torch

from spatial_ttt.checkpoint import load_model
from spatial_ttt.eval.memory_suite import accuracy_table, score_records
from spatial_ttt.files import atomic_write_json
from spatial_ttt.train.config import load_config
from spatial_ttt.train.data import read_records
from spatial_ttt.train.trainer import Trainer

SCORE_ROWS = 16  # held-out records per scoring forward (padded rows: the same predictions, far fewer launches)
CALIBRATION_EVAL = SCORE_ROWS  # held-out records timed in calibration: one scoring batch
SAVE_S = 15.0  # what a chained run keeps for saving its checkpoint before the deadline


def score(folder: Path, trainer: Trainer, records: list[dict]) -> tuple[list[dict], float]:
    """Score ``records`` with the saved model in fp32, the reference fast-weight kernel (no compilation)."""
    device = trainer.accelerator.device
    model = load_model(folder).to(device).eval()
    model.config.ttt_kernel = "reference"
    start = time.perf_counter()
    rows = score_records(model, trainer.encoder, records, device, batch_size=SCORE_ROWS)
    return rows, time.perf_counter() - start


def calibrate(config_path: str, overrides: list[str], run_dir: Path, steps: int, records: list[dict]) -> dict:
    """Time ``steps`` throwaway training steps and the scoring of a few held-out records."""
    start = time.perf_counter()
    config = load_config(config_path, [*overrides, f"output_dir={run_dir / 'calibration'}", f"max_steps={steps}"])
    trainer = Trainer(config)
    setup_s = time.perf_counter() - start
    trainer.train()
    times = [h["step_s"] for h in trainer.history]
    folder = trainer.save_checkpoint()
    score(folder, trainer, records[:CALIBRATION_EVAL])  # untimed: the first forward pays one-off costs (kernels, allocator)
    rows, eval_s = score(folder, trainer, records[:CALIBRATION_EVAL])
    # the first steps compile (and recompile for new lengths): the steady step time is the median of the later
    # half, and what the steps took beyond it is compilation, which the real run pays again (from a warm cache)
    step_s = statistics.median(times[len(times) // 2 :])
    result = {"setup_s": round(setup_s, 1), "step_s": round(step_s, 4), "compile_s": round(max(0.0, sum(times) - step_s * len(times)), 1),
              "eval_s_per_record": round(eval_s / min(len(records), CALIBRATION_EVAL), 4), "step_times": times}
    del trainer
    gc.collect()
    torch.cuda.empty_cache()
    return result


def wait_for_steps(path: Path, deadline: float) -> int:
    while not path.exists():
        if time.time() > deadline:
            raise TimeoutError(f"no {path} before the deadline")
        time.sleep(0.5)
    return int(json.loads(path.read_text())["max_steps"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("seed", type=int)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("data_dir")
    parser.add_argument("deadline", type=float)
    parser.add_argument("--calibrate", type=int, default=0)
    parser.add_argument("--chain", action="store_true", help="resume from RUN_DIR; save instead of scoring if unfinished")
    parser.add_argument("--no-score", action="store_true", help="train and save only; no held-out evaluation")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    if args.chain and args.calibrate:
        parser.error("--chain trains a fixed max_steps=S: no calibration")
    run_dir, data_dir = args.run_dir, args.data_dir
    overrides = [*args.overrides, f"seed={args.seed}", f"data_path={data_dir}", "save_steps=1000000"]
    if args.chain:
        overrides.append("resume=auto")
    if args.no_score and args.calibrate:
        parser.error("--no-score needs a fixed max_steps=S: calibration times the scoring")
    records = [] if args.no_score else read_records(data_dir, ["eval.jsonl"])
    calibration = None
    if args.calibrate:
        calibration = calibrate(args.config, overrides, run_dir, args.calibrate, records)
        atomic_write_json(run_dir / "calibration.json", calibration)  # its existence tells run_device.py
        print(json.dumps({"calibration": {k: v for k, v in calibration.items() if k != "step_times"}}), flush=True)
        overrides.append(f"max_steps={wait_for_steps(run_dir / 'steps.json', args.deadline)}")
    config = load_config(args.config, [*overrides, f"output_dir={run_dir / 'run'}"])
    start = time.perf_counter()
    trainer = Trainer(config)
    setup_s = time.perf_counter() - start
    # stop early only if evaluation would otherwise miss the deadline (recorded: steps < max_steps)
    eval_s = 0.0 if args.no_score else (calibration["eval_s_per_record"] * len(records) if calibration else 60.0) * 1.25 + 20.0
    start = time.perf_counter()
    block = 10  # steps per train() call (each starts the data loader anew); the deadline is checked between blocks
    first_step = trainer.step
    while trainer.step < trainer.total_steps:
        # the next block's time from the median recent step: the first steps compile and are no guide
        recent = [h["step_s"] for h in trainer.history[max(first_step, trainer.step - block):]] or [0.0]
        pace = statistics.median(recent)
        finishing = time.time() + (trainer.total_steps - trainer.step) * pace <= args.deadline - eval_s
        reserve = eval_s if finishing or not args.chain else SAVE_S  # a chained run that cannot finish only saves
        if time.time() + block * pace > args.deadline - reserve:
            break
        trainer.train(stop_after=trainer.step + block)
    train_s = time.perf_counter() - start
    folder = Path(config.output_dir) / f"checkpoint-{trainer.step}"
    if not folder.exists():
        folder = trainer.save_checkpoint()
    if args.chain and trainer.step < trainer.total_steps:
        progress = {"steps": trainer.step, "max_steps": trainer.total_steps, "steps_this_call": trainer.step - first_step,
                    "train_s": round(train_s, 1), "checkpoint": str(folder)}
        atomic_write_json(run_dir / "progress.json", progress)
        print(json.dumps({"progress": progress}), flush=True)
        return
    rows, eval_s = score(folder, trainer, records) if records else (None, 0.0)
    result = {"config": args.config, "seed": args.seed, "overrides": args.overrides, "steps": trainer.step,
              "max_steps": trainer.total_steps, "setup_s": round(setup_s, 1), "train_s": round(train_s, 1),
              "eval_s": round(eval_s, 1), "calibration": calibration, "checkpoint": str(folder),
              "data": trainer.data_summary, "history": trainer.history, "accuracy": accuracy_table(rows) if rows else None, "rows": rows,
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    atomic_write_json(run_dir / "result.json", result)
    print(json.dumps({k: result[k] for k in ("config", "seed", "steps", "train_s", "eval_s", "accuracy")}), flush=True)


if __name__ == "__main__":
    main()
