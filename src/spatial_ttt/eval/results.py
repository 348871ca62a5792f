"""Per-sample results (append-only JSONL, crash-safe) and the summary table (JSON + markdown)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from spatial_ttt.eval.errors import EvalError
from spatial_ttt.files import atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class ScoreRow:
    name: str  # e.g. "object_counting", "10mins", "rotation"
    metric: str  # "accuracy" or "MRA"
    score: float  # fraction in [0, 1]
    n: int  # questions behind the score


@dataclass(frozen=True)
class Summary:
    bench: str
    rows: list[ScoreRow]
    overall: float | None  # None where the benchmark defines no single number
    overall_rule: str  # how `overall` is formed, printed under the table
    n_samples: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        """Scores ×100 with one decimal, as the published tables print them."""
        lines = [f"## {self.bench}", "", "| | metric | score | n |", "|---|---|---:|---:|"]
        lines += [f"| {r.name} | {r.metric} | {100 * r.score:.1f} | {r.n} |" for r in self.rows]
        if self.overall is not None:
            lines.append(f"| **overall** | | **{100 * self.overall:.1f}** | {self.n_samples} |")
        lines += ["", f"Overall: {self.overall_rule}"]
        lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


class ResultStore:
    """results.jsonl: one JSON object per finished sample, each line flushed and fsynced.

    A crash can leave only the last line incomplete (no trailing newline); it is cut off on open so
    that sample simply runs again. Any other unreadable line is an error, never silently dropped.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.results: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._load()

    def _load(self) -> None:
        data = self.path.read_bytes()
        complete_end = data.rfind(b"\n") + 1  # bytes up to the last newline are complete lines
        if complete_end < len(data):
            with open(self.path, "r+b") as f:  # drop the torn tail left by a crash
                f.truncate(complete_end)
                f.flush()
                os.fsync(f.fileno())
        self.results = read_results(self.path)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.results

    def append(self, result: dict[str, Any]) -> None:
        line = json.dumps(result, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.results[str(result["id"])] = result


def read_results(path: Path) -> dict[str, dict[str, Any]]:
    """The complete lines of a results file, by id, read-only: an incomplete last line (a crash, or another
    process still writing it) is ignored, any other unreadable line is an error."""
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1].decode("utf-8")
    results: dict[str, dict[str, Any]] = {}
    for line_no, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            result = json.loads(line)
        except json.JSONDecodeError:
            raise EvalError(f"{path} line {line_no}: corrupt result line; fix or delete it") from None
        if not isinstance(result, dict) or "id" not in result:
            raise EvalError(f"{path} line {line_no}: result without an 'id'")
        results[str(result["id"])] = result
    return results


def write_summary(out_dir: Path, summary: Summary) -> None:
    atomic_write_json(out_dir / "summary.json", summary.to_dict(), indent=2)
    atomic_write_text(out_dir / "summary.md", summary.to_markdown())
