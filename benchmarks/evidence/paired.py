"""Paired difference between two variants on the same held-out questions, with a bootstrap interval.

python benchmarks/evidence/paired.py RESULTS_JSON [--a ttt_all] [--b swa_all] [--samples 2000] [--seed 0]

Every variant answers the same held-out records, so per record the difference of correctness (each variant's
mean over its seeds) is paired; the table gives its mean per length and task in percentage points and a 95 %
percentile interval from resampling records. Records vary, seeds are too few to resample: the interval says how
sure the difference is on these questions, not how it would move with a new seed (the tables of report.py show
the seed spread).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

LENGTHS = ("1x", "4x", "16x")
TASKS = ("first", "order", "count", "room_size", "all")


def per_record(results: dict, variant: str) -> dict[tuple[str, str, str], float]:
    """(length, task, record id) -> the variant's correctness averaged over its seeds (runs named VARIANT-sSEED)."""
    answers: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    runs = [res for name, res in results.items() if name.rsplit("-s", 1)[0] == variant]
    if not runs:
        raise SystemExit(f"no runs of {variant!r} in the results (runs: {', '.join(sorted(results))})")
    for res in runs:
        for row in res["rows"]:
            answers[row["length"], row["task"], str(row["id"])].append(float(row["correct"]))
    return {key: sum(v) / len(v) for key, v in answers.items()}


def paired_table(results: dict, a: str, b: str, samples: int = 2000, seed: int = 0) -> list[dict]:
    """One row per length and task: mean difference a - b (points), its 95 % bootstrap interval, record count."""
    first, second = per_record(results, a), per_record(results, b)
    if first.keys() != second.keys():
        raise SystemExit(f"{a} and {b} answered different records: not a paired comparison")
    rng = random.Random(seed)
    rows = []
    for length in LENGTHS:
        for task in TASKS:
            diffs = [first[k] - second[k] for k in first if k[0] == length and (task == "all" or k[1] == task)]
            if not diffs:
                continue
            means = sorted(sum(rng.choices(diffs, k=len(diffs))) / len(diffs) for _ in range(samples))
            rows.append({"length": length, "task": task, "diff": 100 * sum(diffs) / len(diffs),
                         "low": 100 * means[int(0.025 * samples)], "high": 100 * means[int(0.975 * samples) - 1],
                         "records": len(diffs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--a", default="ttt_all")
    parser.add_argument("--b", default="swa_all")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = paired_table(json.loads(args.results.read_text()), args.a, args.b, args.samples, args.seed)
    print(f"| length | task | {args.a} - {args.b} (points) | 95 % interval (records resampled) | records |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['length']} | {r['task']} | {r['diff']:+.1f} | [{r['low']:+.1f}, {r['high']:+.1f}] | {r['records']} |")


if __name__ == "__main__":
    main()
