"""VSI-Bench: records (id, dataset, scene_name, question_type, question, options, ground_truth) and
videos at DATASET/SCENE.mp4; accuracy for multiple choice, MRA for numerical answers."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_ttt.eval import datafiles, metrics, prompts
from spatial_ttt.eval.errors import EvalError
from spatial_ttt.eval.interfaces import VideoQAModel
from spatial_ttt.eval.results import ScoreRow, Summary

REL_DIRECTION_TYPES = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")
MULTIPLE_CHOICE_TYPES = (*REL_DIRECTION_TYPES, "object_rel_distance", "route_planning", "obj_appearance_order")
NUMERICAL_TYPES = ("object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation")
QUESTION_TYPES = MULTIPLE_CHOICE_TYPES + NUMERICAL_TYPES

# The eight scored tasks in the column order of the published tables; the three relative-direction
# types form one task.
TASKS = (
    "object_counting",
    "object_abs_distance",
    "object_size_estimation",
    "room_size_estimation",
    "object_rel_distance",
    "object_rel_direction",
    "route_planning",
    "obj_appearance_order",
)


@dataclass(frozen=True)
class VSIBenchRecord:
    id: str
    dataset: str
    scene_name: str
    question_type: str
    question: str
    options: tuple[str, ...]  # empty for numerical questions
    ground_truth: str  # a letter (multiple choice) or a number as text
    video: Path

    @property
    def media(self) -> tuple[Path, ...]:
        return (self.video,)

    @property
    def is_multiple_choice(self) -> bool:
        return self.question_type in MULTIPLE_CHOICE_TYPES


def parse(row: datafiles.Row, roots: list[Path]) -> VSIBenchRecord:
    question_type = datafiles.require(row, "question_type", str)
    if question_type not in QUESTION_TYPES:
        raise EvalError(f"{row.where}: unknown question_type {question_type!r} (known: {', '.join(QUESTION_TYPES)})")
    dataset = datafiles.require(row, "dataset", str)
    scene = datafiles.require(row, "scene_name", str)
    if question_type in MULTIPLE_CHOICE_TYPES:
        options = tuple(datafiles.require_str_list(row, "options"))
        ground_truth = datafiles.require(row, "ground_truth", str).strip()
    else:
        options = ()
        datafiles.require_number(row, "ground_truth")
        ground_truth = str(row.fields["ground_truth"]).strip()
    return VSIBenchRecord(
        id=datafiles.record_id(row),
        dataset=dataset,
        scene_name=scene,
        question_type=question_type,
        question=datafiles.require(row, "question", str),
        options=options,
        ground_truth=ground_truth,
        video=datafiles.resolve_media(f"{dataset}/{scene}.mp4", roots),
    )


def build_prompt(record: VSIBenchRecord, *, rooms_hint: bool) -> str:
    if record.is_multiple_choice:
        text = prompts.multiple_choice_prompt(record.question, record.options)
    else:
        text = prompts.numerical_prompt(record.question)
    return prompts.with_rooms_hint(text, rooms_hint)


def score(record: VSIBenchRecord, prediction: str) -> tuple[str, float]:
    if record.is_multiple_choice:
        return metrics.score_multiple_choice(prediction, record.ground_truth)
    return metrics.score_numerical(prediction, float(record.ground_truth))


def aggregate(results: list[dict[str, Any]]) -> Summary:
    """Mean per question type; the three relative-direction types averaged into one task (mean of
    their means); overall = mean of the task scores (not a mean over questions)."""
    by_type: dict[str, list[float]] = defaultdict(list)
    for result in results:
        by_type[result["question_type"]].append(result["score"])
    type_means = {t: metrics.mean(s) for t, s in by_type.items()}

    rows: list[ScoreRow] = []
    for task in TASKS:
        if task == "object_rel_direction":
            parts = [t for t in REL_DIRECTION_TYPES if t in type_means]
            if parts:
                n = sum(len(by_type[t]) for t in parts)
                rows.append(ScoreRow(task, "accuracy", metrics.mean([type_means[t] for t in parts]), n))
        elif task in type_means:
            metric = "MRA" if task in NUMERICAL_TYPES else "accuracy"
            rows.append(ScoreRow(task, metric, type_means[task], len(by_type[task])))

    notes = []
    missing = [t for t in QUESTION_TYPES if t not in type_means]
    if missing:
        notes.append(f"partial run: no results for {', '.join(missing)}; not comparable to published numbers")
    return Summary(
        bench="vsibench",
        rows=rows,
        overall=metrics.mean([r.score for r in rows]) if rows else None,
        overall_rule="mean of the task scores (relative direction = mean of its easy/medium/hard accuracies)",
        n_samples=len(results),
        notes=notes,
    )


class VSIBench:
    name = "vsibench"
    streaming = False
    default_max_new_tokens = 16

    def load(self, data: Path, work_dir: Path) -> list[VSIBenchRecord]:
        files = datafiles.record_files(data)
        rows = datafiles.read_rows(files)
        roots = datafiles.media_roots(data, files)
        records = [parse(row, roots) for row in rows]
        datafiles.check_unique([r.id for r in records], rows)
        return records

    def run(
        self, model: VideoQAModel, record: VSIBenchRecord, *, max_new_tokens: int, rooms_hint: bool
    ) -> dict[str, Any]:
        prompt = build_prompt(record, rooms_hint=rooms_hint)
        prediction = model.answer(record.video, prompt, max_new_tokens=max_new_tokens)
        extracted, value = score(record, prediction)
        return {
            "id": record.id,
            "question_type": record.question_type,
            "dataset": record.dataset,
            "scene_name": record.scene_name,
            "prompt": prompt,
            "prediction": prediction,
            "extracted": extracted,
            "ground_truth": record.ground_truth,
            "score": value,
        }

    def summarize(self, results: list[dict[str, Any]]) -> Summary:
        return aggregate(results)
