"""VSI-SUPER Recall (VSR) and Count (VSC): long streams (10 to 240 minutes) of concatenated scene videos,
run through the streaming engine so that memory stays bounded.

Release layout (nyu-visionx/VSI-SUPER-Recall, -Count): records with `video_path` (relative to the data
folder), `question`, and
- Recall: `options`, `answer` (a letter), `type` (duration split, e.g. "60mins"); one question at the end.
- Count: `answer` (a number), `split` ("10mins", ...); streaming rows (split "..._streaming") carry
  `query_times` and `answers` instead: the question is asked at each query time while the video streams.
We also accept `video_path` as a list of segment files, streamed back to back as one stream.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_ttt.eval import datafiles, metrics, prompts
from spatial_ttt.eval.errors import EvalError
from spatial_ttt.eval.interfaces import StreamingQAModel
from spatial_ttt.eval.results import ScoreRow, Summary


@dataclass(frozen=True)
class Observe:
    path: Path
    start_s: float | None  # None: from the start of the file
    end_s: float | None  # None: to its end


@dataclass(frozen=True)
class Ask:
    index: int  # which entry of the record's answers this question is scored against


Step = Observe | Ask


@dataclass(frozen=True)
class VSISuperRecord:
    id: str
    split: str
    question: str
    options: tuple[str, ...]  # Recall only
    answers: tuple[str, ...]  # one per question asked (Count streaming: several)
    query_times: tuple[float, ...]  # seconds from the stream start; empty: ask once at the end
    segments: tuple[Path, ...]

    @property
    def media(self) -> tuple[Path, ...]:
        return self.segments


def plan_stream(
    segments: list[Path], durations: list[float] | None, query_times: list[float], n_answers: int
) -> list[Step]:
    """What to feed and when to ask.

    The question is asked at each query time; when there is one more answer than query times, it is
    asked once more at the end of the stream. Query times are global over the concatenated segments,
    so several segments need their durations.
    """
    if n_answers not in (len(query_times), len(query_times) + 1) or n_answers == 0:
        raise EvalError(f"{n_answers} answers do not fit {len(query_times)} query times")
    if any(t < 0 for t in query_times) or any(b <= a for a, b in zip(query_times, query_times[1:], strict=False)):
        raise EvalError(f"query times must be non-negative and increasing, got {query_times}")
    if len(segments) > 1 and query_times and durations is None:
        raise EvalError("query times over several segments need the segment durations")

    offsets = [0.0]
    for d in durations or []:
        offsets.append(offsets[-1] + d)

    def feed(start: float, end: float | None) -> list[Step]:
        if len(segments) == 1:
            return [Observe(segments[0], start or None, end)]
        steps: list[Step] = []
        for i, path in enumerate(segments):
            seg_start, seg_end = offsets[i], offsets[i + 1]
            if (end is not None and end <= seg_start) or start >= seg_end:
                continue
            local_start = max(start - seg_start, 0.0)
            local_end = None if end is None or end >= seg_end else end - seg_start
            steps.append(Observe(path, local_start or None, local_end))
        return steps

    if not query_times:
        return [Observe(p, None, None) for p in segments] + [Ask(0)]
    steps: list[Step] = []
    position = 0.0
    for i, t in enumerate(query_times):
        steps += feed(position, t) + [Ask(i)]
        position = t
    if n_answers > len(query_times):
        steps += feed(position, None) + [Ask(len(query_times))]
    return steps


def probe_duration(path: Path) -> float:
    """Seconds of video in `path` (container duration, else the video stream's)."""
    import av

    with av.open(str(path)) as container:
        if container.duration is not None:
            return container.duration / 1_000_000  # av.time_base
        stream = container.streams.video[0]
        if stream.duration is None or stream.time_base is None:
            raise EvalError(f"{path}: cannot tell the video duration")
        return float(stream.duration * stream.time_base)


def _parse(row: datafiles.Row, roots: list[Path], recall: bool) -> VSISuperRecord:
    raw_video = row.fields.get("video_path")
    if isinstance(raw_video, str):
        video_list = [raw_video]
    elif isinstance(raw_video, (list, tuple)) and raw_video and all(isinstance(v, str) for v in raw_video):
        video_list = list(raw_video)
    else:
        raise EvalError(f"{row.where}: field 'video_path' must be a path or a non-empty list of paths")
    split_keys = ("type", "split") if recall else ("split", "type")  # Recall names its split "type"
    split = next((str(row.fields[k]) for k in split_keys if row.fields.get(k)), "all")
    question = datafiles.require(row, "question", str).strip()
    if recall:
        options = tuple(datafiles.require_str_list(row, "options"))
        answers: tuple[str, ...] = (datafiles.require(row, "answer", str).strip(),)
        query_times: tuple[float, ...] = ()
    else:
        options = ()
        if row.fields.get("query_times") is not None:
            query_times = tuple(_number_list(row, "query_times"))
            answers = tuple(str(a) for a in _number_list(row, "answers"))
        else:
            query_times = ()
            answers = (str(datafiles.require_number(row, "answer")),)
    return VSISuperRecord(
        id=datafiles.record_id(row),
        split=split,
        question=question,
        options=options,
        answers=answers,
        query_times=query_times,
        segments=tuple(datafiles.resolve_media(v, roots) for v in video_list),
    )


def _number_list(row: datafiles.Row, key: str) -> list[float]:
    values = datafiles.require(row, key, (list, tuple))
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise EvalError(f"{row.where}: field {key!r} must be a list of numbers") from None


def _split_order(split: str) -> tuple[float, str]:
    match = re.match(r"(\d+)", split)
    return (float(match.group(1)) if match else float("inf"), split)


class _VSISuper:
    name: str
    recall: bool
    metric: str
    streaming = True
    default_max_new_tokens = 16

    def __init__(self, duration_probe: Callable[[Path], float] = probe_duration) -> None:
        self.duration_probe = duration_probe

    def load(self, data: Path, work_dir: Path) -> list[VSISuperRecord]:
        files = datafiles.record_files(data)
        rows = datafiles.read_rows(files)
        roots = datafiles.media_roots(data, files)
        records = [_parse(row, roots, self.recall) for row in rows]
        datafiles.check_unique([r.id for r in records], rows)
        for record, row in zip(records, rows, strict=True):
            try:  # validate the query plan now rather than hours into a run
                plan_stream(
                    list(record.segments), [0.0] * len(record.segments), list(record.query_times), len(record.answers)
                )
            except EvalError as err:
                raise EvalError(f"{row.where}: {err}") from None
        return records

    def prompt(self, record: VSISuperRecord, rooms_hint: bool) -> str:
        if self.recall:  # the reference Recall task has no "These are frames of a video." line
            text = prompts.multiple_choice_prompt(record.question, record.options, pre_prompt=None)
        else:
            text = prompts.numerical_prompt(record.question)
        return prompts.with_rooms_hint(text, rooms_hint)

    def score(self, prediction: str, answer: str) -> tuple[str, float]:
        if self.recall:
            return metrics.score_multiple_choice(prediction, answer)
        return metrics.score_numerical(prediction, float(answer))

    def run(
        self, model: StreamingQAModel, record: VSISuperRecord, *, max_new_tokens: int, rooms_hint: bool
    ) -> dict[str, Any]:
        prompt = self.prompt(record, rooms_hint)
        durations = None
        if len(record.segments) > 1 and record.query_times:
            durations = [self.duration_probe(p) for p in record.segments]
        steps = plan_stream(list(record.segments), durations, list(record.query_times), len(record.answers))
        predictions: list[str] = []
        session = model.open_stream()
        try:
            for step in steps:
                if isinstance(step, Observe):
                    session.observe_video(step.path, step.start_s, step.end_s)
                else:
                    predictions.append(session.ask(prompt, max_new_tokens=max_new_tokens))
        finally:
            session.close()
        scored = [self.score(p, a) for p, a in zip(predictions, record.answers, strict=True)]
        return {
            "id": record.id,
            "split": record.split,
            "prompt": prompt,
            "query_times": list(record.query_times),
            "predictions": predictions,
            "extracted": [e for e, _ in scored],
            "answers": list(record.answers),
            "scores": [s for _, s in scored],
            "score": metrics.mean([s for _, s in scored]),
        }

    def summarize(self, results: list[dict[str, Any]]) -> Summary:
        """Per duration split: mean over every asked question (streaming Count: over all query times,
        as the benchmark's own aggregation flattens them). No single overall number is defined."""
        by_split: dict[str, list[float]] = defaultdict(list)
        for result in results:
            by_split[result["split"]].extend(result["scores"])
        rows = [
            ScoreRow(s, self.metric, metrics.mean(v), len(v))
            for s, v in sorted(by_split.items(), key=lambda kv: _split_order(kv[0]))
        ]
        return Summary(
            bench=self.name,
            rows=rows,
            overall=None,
            overall_rule="none: VSI-SUPER is reported per stream duration",
            n_samples=len(results),
        )


class VSISuperRecall(_VSISuper):
    name = "vsisuper_recall"
    recall = True
    metric = "accuracy"


class VSISuperCount(_VSISuper):
    name = "vsisuper_count"
    recall = False
    metric = "MRA"
