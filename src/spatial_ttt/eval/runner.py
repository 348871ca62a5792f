"""Run a benchmark: load, skip finished samples, ask the model, append results, write the summary.

Data-parallel: process `rank` of `world` runs every world-th sample (samples[rank::world]) into its own
results file; whichever process finds every sample done writes the one summary, the same as a one-process run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from spatial_ttt.eval.errors import EvalError
from spatial_ttt.eval.interfaces import Benchmark, StreamingQAModel, VideoQAModel
from spatial_ttt.eval.mindcube import MindCube
from spatial_ttt.eval.results import ResultStore, Summary, read_results, write_summary
from spatial_ttt.eval.vsibench import VSIBench
from spatial_ttt.eval.vsisuper import VSISuperCount, VSISuperRecall
from spatial_ttt.files import atomic_write_json

BENCHMARKS: dict[str, Callable[[], Benchmark]] = {
    "vsibench": VSIBench,
    "vsisuper_recall": VSISuperRecall,
    "vsisuper_count": VSISuperCount,
    "mindcube": lambda: MindCube("mindcube"),
    "mindcube_tiny": lambda: MindCube("mindcube_tiny"),
}

RESULTS_FILE = "results.jsonl"  # one process; process RANK of several writes results.rankRANK.jsonl
RESULTS_GLOB = "results*.jsonl"
RUN_FILE = "run.json"  # the settings the results were made with; a resume must use the same


def get_benchmark(name: str) -> Benchmark:
    key = name.lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise EvalError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    return BENCHMARKS[key]()


def run_benchmark(
    bench: str | Benchmark,
    data: str | Path,
    model: Any,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    rooms_hint: bool = True,
    max_new_tokens: int | None = None,
    progress: bool = True,
    shard: tuple[int, int] = (0, 1),
) -> Summary | None:
    """Evaluate `model` on the first `limit` samples (all if None) of the benchmark in `data`.

    Results go to OUT/results.jsonl as each sample finishes (OUT/results.rankR.jsonl for shard (R, W), W > 1,
    which runs samples R, R + W, ...); a rerun with the same OUT skips samples finished in any results file,
    whatever the shards were. Once every selected sample has a result, the summary is written to
    OUT/summary.json and OUT/summary.md and returned; a shard that finishes while others still run returns None.
    """
    benchmark = get_benchmark(bench) if isinstance(bench, str) else bench
    _check_model(benchmark, model)
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, got {limit}")
    rank, world = shard
    if not 0 <= rank < world:
        raise EvalError(f"shard {rank} of {world} does not exist")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokens = max_new_tokens or benchmark.default_max_new_tokens
    samples = benchmark.load(Path(data), out)[:limit]
    store = ResultStore(out / (RESULTS_FILE if world == 1 else f"results.rank{rank}.jsonl"))
    done = {**collect_results(out), **store.results}
    _check_run_settings(out, bool(done), {"bench": benchmark.name, "rooms_hint": rooms_hint, "max_new_tokens": tokens})
    mine = samples[rank::world]
    todo = [s for s in mine if s.id not in done]
    _check_media(todo)

    with Progress(
        TextColumn(f"[bold]{benchmark.name}" + (f" {rank + 1}/{world}" if world > 1 else "")),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not progress,
    ) as bar:
        task = bar.add_task("eval", total=len(mine), completed=len(mine) - len(todo))
        for sample in todo:
            store.append(benchmark.run(model, sample, max_new_tokens=tokens, rooms_hint=rooms_hint))
            bar.advance(task)

    merged = {**collect_results(out), **store.results}
    if any(s.id not in merged for s in samples):
        return None  # other shards still run; the last one to finish writes the summary
    summary = benchmark.summarize([merged[s.id] for s in samples])
    write_summary(out, summary)
    return summary


def collect_results(out: Path) -> dict[str, dict[str, Any]]:
    """Every finished result in OUT, from all results files (all shards, any earlier runs)."""
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted(out.glob(RESULTS_GLOB)):
        merged.update(read_results(path))
    return merged


def _check_model(benchmark: Benchmark, model: Any) -> None:
    needed = StreamingQAModel if benchmark.streaming else VideoQAModel
    if not isinstance(model, needed):
        method = "open_stream()" if benchmark.streaming else "answer(video, prompt, *, max_new_tokens)"
        raise EvalError(f"{benchmark.name} needs a model with {method}; got {type(model).__name__}")


def _check_run_settings(out: Path, has_results: bool, settings: dict[str, Any]) -> None:
    """Results of one folder must come from one benchmark and one prompt/decoding setting."""
    path = out / RUN_FILE
    if has_results and path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise EvalError(f"{path}: not valid JSON; restore it or use another --out folder") from None
        changed = {k: (previous.get(k), v) for k, v in settings.items() if previous.get(k) != v}
        if changed:
            what = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise EvalError(f"{out} holds results made with other settings ({what}); use another --out folder")
    else:
        atomic_write_json(path, settings, indent=2)


def _check_media(samples: list[Any]) -> None:
    missing = [(s.id, p) for s in samples for p in s.media if not Path(p).exists()]
    if missing:
        shown = "; ".join(f"sample {i}: {p}" for i, p in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise EvalError(f"{len(missing)} media file(s) not found: {shown}{more}")
