"""One training run of the memory evidence study, then its held-out evaluation (used by run_device.py).

python benchmarks/evidence/worker.py CONFIG SEED RUN_DIR DATA_DIR TIME_LIMIT_S [KEY=VALUE ...]
Trains with the repository's trainer (settings: CONFIG, then the KEY=VALUE overrides) for its max_steps or until
TIME_LIMIT_S of training have passed
(whichever comes first; the step count reached is recorded), saves the model folder, reloads it in fp32 and
scores the held-out streams (DATA_DIR/eval.jsonl). Writes RUN_DIR/result.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from spatial_ttt.checkpoint import load_model
from spatial_ttt.eval.memory_suite import accuracy_table, score_records
from spatial_ttt.train.config import load_config
from spatial_ttt.train.data import read_records
from spatial_ttt.train.trainer import Trainer


def main(config_path: str, seed: int, run_dir: str, data_dir: str, limit_s: float, extra: list[str]) -> None:
    # Eight runs start at once on one GPU: compiling for every stream length in each of them would eat the time
    # budget, so the fast-weight step and the conv run the plain reference kernel (the same math).
    overrides = ["model_settings.ttt_kernel=reference", *extra, f"seed={seed}", f"output_dir={run_dir}", f"data_path={data_dir}", "save_steps=1000000"]
    config = load_config(config_path, overrides)
    start = time.perf_counter()
    trainer = Trainer(config)
    setup_s = time.perf_counter() - start
    start = time.perf_counter()
    while trainer.step < trainer.total_steps and time.perf_counter() - start < limit_s:
        trainer.train(stop_after=trainer.step + 10)
    train_s = time.perf_counter() - start
    folder = Path(run_dir) / f"checkpoint-{trainer.step}"
    if not folder.exists():
        folder = trainer.save_checkpoint()
    device = trainer.accelerator.device
    model = load_model(folder).to(device).eval()
    start = time.perf_counter()
    rows = score_records(model, trainer.encoder, read_records(data_dir, ["eval.jsonl"]), device)
    result = {"config": config_path, "seed": seed, "steps": trainer.step, "max_steps": trainer.total_steps,
              "setup_s": round(setup_s, 1), "train_s": round(train_s, 1), "eval_s": round(time.perf_counter() - start, 1),
              "checkpoint": str(folder), "data": trainer.data_summary, "history": trainer.history,
              "accuracy": accuracy_table(rows), "rows": rows, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}
    (Path(run_dir) / "result.json").write_text(json.dumps(result))
    print(json.dumps({k: result[k] for k in ("config", "seed", "steps", "train_s", "eval_s", "accuracy")}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), sys.argv[6:])
