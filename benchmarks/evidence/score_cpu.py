"""Held-out accuracy of model folders on the memory suite, on the CPU (the plain fast-weight kernel, fp32): a
cross-check of the device's scores (compiled kernel, bf16) on the same held-out walks, rendered here.

python benchmarks/evidence/score_cpu.py MODEL_DIR [MODEL_DIR ...] [--scenes 100] [--lengths 1x 4x 16x]
    [--out scores.json] [--results RESULTS_JSON]

Scene seeds are the suite's held-out ones (memory_tasks.HELD_OUT_SEED onwards), so --scenes 100 is the 1,200
questions run_device.py scores. Prints accuracy % per length and task for each model, and writes every answer
with the accuracies as fractions (memory_suite.accuracy_table, as run_device.py's results.json).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from spatial_ttt.checkpoint import load_model
from spatial_ttt.data.memory_tasks import HELD_OUT_SEED, STRIDES, iter_scene_records
from spatial_ttt.eval.memory_suite import accuracy_table, score_records, suite_encoder
from spatial_ttt.files import atomic_write_json
from spatial_ttt.video import SpatialTTTProcessor

TASKS = ("first", "order", "count", "room_size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--scenes", type=int, default=100)
    parser.add_argument("--lengths", nargs="+", choices=list(STRIDES), default=list(STRIDES))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--results", type=Path, help="run_device.py's results.json to fill in (runs named as the folders)")
    args = parser.parse_args()
    runs = json.loads(args.results.read_text()) if args.results else None
    if runs is not None:
        if not args.out:
            parser.error("--results needs --out")
        unknown = [f.name for f in args.models if f.name not in runs]
        if unknown:
            parser.error(f"no run named {', '.join(unknown)} in {args.results} (runs: {', '.join(sorted(runs))})")
    results = {}
    with tempfile.TemporaryDirectory(prefix="score_cpu-") as tmp:
        work = Path(tmp)  # the rendered walks and their encodings (records name videos under it)
        records = [r for recs in iter_scene_records(HELD_OUT_SEED, args.scenes, work, lengths=tuple(args.lengths))
                   for r in recs]
        for folder in args.models:
            start = time.perf_counter()
            model = load_model(folder).eval()
            encoder = suite_encoder(SpatialTTTProcessor.from_pretrained(folder), work)
            rows = score_records(model, encoder, records)
            results[str(folder)] = {"accuracy": accuracy_table(rows), "rows": rows,
                                    "seconds": round(time.perf_counter() - start, 1)}
            print(f"{folder}: {len(rows)} answers in {results[str(folder)]['seconds']} s", flush=True)
    print("| model | length | " + " | ".join(TASKS) + " | all |")
    print("|---|---|" + "---|" * (len(TASKS) + 1))
    for folder, res in results.items():
        for length in args.lengths:
            acc = res["accuracy"].get(length, {})
            cells = (f"{100 * acc[t]:.1f}" if t in acc else "-" for t in (*TASKS, "all"))
            print(f"| {Path(folder).name} | {length} | " + " | ".join(cells) + " |")
    if runs is not None:
        for folder, res in results.items():
            runs[Path(folder).name].update(accuracy=res["accuracy"], rows=res["rows"], scored_on="cpu")
        results = runs
    if args.out:
        atomic_write_json(args.out, results)


if __name__ == "__main__":
    main()
