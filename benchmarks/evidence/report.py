"""Tables and plots for benchmarks/EVIDENCE.md from run_device.py's results.json.

python benchmarks/evidence/report.py RESULTS_JSON OUT_DIR [--data DATA_DIR] [--prefix evidence]
(needs the `bench` extra: matplotlib). With DATA_DIR (train.jsonl / eval.jsonl), the tables get a row for a blind
guesser that always gives the most common training answer of each task and length. Writes
OUT_DIR/PREFIX_tables.md, OUT_DIR/PREFIX_accuracy_vs_length.png and OUT_DIR/PREFIX_training.png.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

VARIANTS = {"ttt_all": "TTT everywhere, no anchor", "swa_all": "windowed attention only, no anchor",
            "hybrid": "hybrid TTT + anchor (ours)", "swa": "hybrid with TTT branch off (window + anchor)",
            "noconv": "hybrid without spatial conv", "full": "full attention everywhere"}
LENGTHS = ("1x", "4x", "16x")
TASKS = ("first", "order", "count", "room_size", "all")


def by_variant(results: dict) -> dict[str, list[dict]]:
    """Runs grouped by variant (run names are VARIANT-sSEED), in VARIANTS order."""
    out = defaultdict(list)
    for name, res in sorted(results.items()):
        out[name.rsplit("-s", 1)[0]].append(res)
    order = list(VARIANTS)
    return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))


def cell(values: list[float]) -> str:
    """mean ± half the range over seeds, in percent."""
    v = 100 * np.array(values)
    return f"{v.mean():.1f} ± {(v.max() - v.min()) / 2:.1f}"


def prior_accuracy(data: Path) -> dict[str, dict[str, float]]:
    """Per length and task: eval accuracy of always answering the most common training answer."""
    def answers(split: str) -> dict[tuple[str, str], list[str]]:
        out = defaultdict(list)
        for line in (data / f"{split}.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec.get("near"):  # curriculum clips ask about another stream than the held-out questions do
                continue
            for task, turn in zip(rec["tasks"], rec["conversations"][1::2]):
                out[(rec["length"], task)].append(turn["value"])
        return out
    train, held_out = answers("train"), answers("eval")
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (length, task), values in held_out.items():
        guess = max(set(train[(length, task)]), key=train[(length, task)].count)
        table[length][task] = sum(v == guess for v in values) / len(values)
    for length, row in table.items():
        row["all"] = sum(row.values()) / len(row)
    return table


def tables(results: dict, prior: dict | None = None) -> str:
    groups = by_variant(results)
    lines = []
    for length in LENGTHS:
        lines.append(f"\n**{length} streams** (accuracy %, mean ± half-range over seeds)\n")
        lines.append("| variant | seeds | steps | " + " | ".join(TASKS) + " |")
        lines.append("|---|---|---|" + "---|" * len(TASKS))
        for variant, runs in groups.items():
            row = [cell([r["accuracy"][length][t] for r in runs]) for t in TASKS]
            steps = "/".join(str(r["steps"]) for r in runs)
            skipped = [sum(1 for h in r["history"] if h.get("skipped")) for r in runs]
            if any(skipped):  # steps the trainer did not apply (non-finite loss or gradient norm)
                steps += " (skipped " + "/".join(map(str, skipped)) + ")"
            lines.append(f"| {VARIANTS.get(variant, variant)} | {len(runs)} | {steps} | " + " | ".join(row) + " |")
        if prior is not None:
            lines.append("| most common training answer (blind) | - | - | "
                         + " | ".join(f"{100 * prior[length][t]:.1f}" for t in TASKS) + " |")
    return "\n".join(lines) + "\n"


def plots(results: dict, out: Path, prefix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = by_variant(results)
    fig, axes = plt.subplots(1, 5, figsize=(19, 3.6), sharey=True)
    for ax, task in zip(axes, TASKS):
        for variant, runs in groups.items():
            acc = np.array([[r["accuracy"][length][task] for length in LENGTHS] for r in runs]) * 100
            ax.errorbar(range(len(LENGTHS)), acc.mean(0), yerr=[acc.mean(0) - acc.min(0), acc.max(0) - acc.mean(0)],
                        marker="o", capsize=3, label=VARIANTS.get(variant, variant))
        ax.set_xticks(range(len(LENGTHS)), [f"{x} window" for x in LENGTHS])
        ax.set_title(task)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out exact match (%)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}_accuracy_vs_length.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (variant, runs) in enumerate(groups.items()):
        for j, r in enumerate(runs):
            steps = [h["step"] for h in r["history"]]
            loss = np.array([h["loss"] for h in r["history"]])
            smooth = np.convolve(loss, np.ones(10) / 10, mode="valid") if len(loss) >= 10 else loss
            ax.plot(steps[len(steps) - len(smooth):], smooth, color=f"C{i}", alpha=0.9 if j == 0 else 0.5,
                    label=VARIANTS.get(variant, variant) if j == 0 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("answer-token loss (10-step mean)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{prefix}_training.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("out")
    parser.add_argument("--data", help="the suite's folder: adds the blind guesser's row")
    parser.add_argument("--prefix", default="evidence")
    args = parser.parse_args()
    results = json.loads(Path(args.results).read_text())
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = tables(results, prior_accuracy(Path(args.data)) if args.data else None)
    (out_dir / f"{args.prefix}_tables.md").write_text(text)
    plots(results, out_dir, args.prefix)
    print(text)


if __name__ == "__main__":
    main()
