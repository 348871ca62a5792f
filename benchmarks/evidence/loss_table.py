"""Training loss of every run at equal steps, from run_device.py's logs.tar.gz (runs that did not finish included).

python benchmarks/evidence/loss_table.py LOGS_TAR_GZ [--at 100 200 300] [--window 50]

Each cell is the mean of the logged losses (one per logging_steps) over the ``window`` steps ending at that step,
so runs of the same seed (same initial weights and packs) compare pack for pack. A run that had not reached a step
shows "-".
"""

from __future__ import annotations

import argparse
import json
import tarfile


def step_logs(path: str) -> dict[str, dict[int, float]]:
    """{run name: {step: loss}} from the ``{"step": ...}`` lines of each NAME.log in the archive."""
    runs = {}
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".log") or member.name.endswith("-failed.log"):
                continue
            text = tar.extractfile(member).read().decode()
            rows = [json.loads(line) for line in text.splitlines() if line.startswith('{"step"')]
            runs[member.name.removesuffix(".log")] = {r["step"]: r["loss"] for r in rows}
    return runs


def window_mean(losses: dict[int, float], step: int, window: int) -> float | None:
    values = [loss for s, loss in losses.items() if step - window < s <= step]
    return sum(values) / len(values) if values and max(losses) >= step else None


def table(runs: dict[str, dict[int, float]], at: list[int], window: int) -> str:
    lines = ["| run | " + " | ".join(f"step {s}" for s in at) + " |", "|---" * (len(at) + 1) + "|"]
    for name, losses in runs.items():
        cells = [window_mean(losses, s, window) for s in at]
        lines.append(f"| {name} | " + " | ".join("-" if c is None else f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs")
    parser.add_argument("--at", type=int, nargs="+", default=[100, 200, 300, 400, 500, 600])
    parser.add_argument("--window", type=int, default=50)
    args = parser.parse_args()
    print(table(step_logs(args.logs), args.at, args.window))


if __name__ == "__main__":
    main()
