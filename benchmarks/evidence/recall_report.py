"""Tables and a plot from recall.py results (Study 5 of EVIDENCE.md).

python benchmarks/evidence/recall_report.py RESULT_DIR... [--plot OUT.png]

Runs are grouped by file name without its ``-s<seed>`` suffix (``ttt_all-s1.json`` -> ``ttt_all``). Prints a
Markdown table of held-out accuracy per distance bin (%, mean ± half-range over seeds) with the steps each seed
reached, and, where runs scored held-out rows along the way (``--eval-every``), the accuracy per bin at the
largest step every variant of the table reached: the equal-step comparison. ``--plot`` (needs the ``bench``
extra: matplotlib) draws the held-out curves, one panel per bin.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path


def load(dirs: list[str]) -> dict[str, list[dict]]:
    """{variant: [result, ...]} from the *.json files of the directories, seeds in file order."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(p for d in dirs for p in Path(d).glob("*.json")):
        groups[re.sub(r"-s\d+$", "", path.stem)].append(json.loads(path.read_text()))
    if not groups:
        raise SystemExit(f"no recall results (*.json) in {', '.join(dirs)}")
    return dict(groups)


def cell(values: list[float]) -> str:
    mean = sum(values) / len(values)
    return f"{100 * mean:.1f} ± {50 * (max(values) - min(values)):.1f}"


def bins_of(groups: dict[str, list[dict]]) -> list[str]:
    return list(next(iter(groups.values()))[0]["held_out"])


def scores_at(run: dict, step: int) -> dict:
    """Held-out scores at ``step``: from the curve, or the final scores where the run ended there."""
    if run["steps_done"] == step:
        return run["held_out"]
    return next(c for c in run.get("held_out_curve", []) if c["step"] == step)


def table(groups: dict[str, list[dict]]) -> str:
    bins = bins_of(groups)
    lines = ["| variant | seeds | steps | " + " | ".join(f"{b} tokens" for b in bins) + " |",
             "|---|---|---|" + "---|" * len(bins)]
    for variant, runs in groups.items():
        steps = "/".join(str(r["steps_done"]) for r in runs)
        row = [cell([r["held_out"][b]["accuracy"] for r in runs]) for b in bins]
        lines.append(f"| {variant} | {len(runs)} | {steps} | " + " | ".join(row) + " |")
    lines.append(f"| chance | - | - | " + " | ".join(f"{100 * runs[0]['chance']:.1f}" for _ in bins) + " |")
    return "\n".join(lines) + "\n"


def equal_step_table(groups: dict[str, list[dict]]) -> str | None:
    """The same table at the largest step that every run scored (None if the runs share none)."""
    scored = [{c["step"] for c in r.get("held_out_curve", [])} | {r["steps_done"]} for rs in groups.values() for r in rs]
    common = set.intersection(*scored)
    if not common:
        return None
    step, bins = max(common), bins_of(groups)
    lines = [f"At step {step} (every run):\n", "| variant | seeds | " + " | ".join(f"{b} tokens" for b in bins) + " |",
             "|---|---|" + "---|" * len(bins)]
    for variant, runs in groups.items():
        row = [cell([scores_at(r, step)[b]["accuracy"] for r in runs]) for b in bins]
        lines.append(f"| {variant} | {len(runs)} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def plot(groups: dict[str, list[dict]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = bins_of(groups)
    fig, axes = plt.subplots(1, len(bins), figsize=(4 * len(bins), 3.4), sharey=True)
    for variant, color in zip(groups, plt.rcParams["axes.prop_cycle"].by_key()["color"]):
        for i, run in enumerate(groups[variant]):
            points = run.get("held_out_curve", []) + [{"step": run["steps_done"], **run["held_out"]}]
            for ax, b in zip(axes, bins):
                ax.plot([p["step"] for p in points], [100 * p[b]["accuracy"] for p in points], color=color,
                        marker=".", label=variant if i == 0 else None)
    for ax, b in zip(axes, bins):
        ax.axhline(100 * next(iter(groups.values()))[0]["chance"], color="grey", linestyle=":", label="chance")
        ax.set_title(f"pair {b} tokens before its query")
        ax.set_xlabel("training step")
    axes[0].set_ylabel("held-out recall accuracy (%)")
    axes[-1].legend()
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    groups = load(args.dirs)
    print(table(groups))
    equal = equal_step_table(groups)
    if equal is not None:
        print(equal)
    if args.plot:
        plot(groups, args.plot)


if __name__ == "__main__":
    main()
