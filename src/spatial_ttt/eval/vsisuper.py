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

import math
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


STREAM_FPS = 1.0  # VSI-SUPER streams are read at 1 frame per second: frame k is the one at k seconds


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
    answers: tuple[str, ...]  # one per question (Count streaming: one per query time, maybe one more at the end)
    query_times: tuple[int, ...]  # 1 fps frame indices (= seconds) of the stream; empty: ask once at the end
    segments: tuple[Path, ...]

    @property
    def media(self) -> tuple[Path, ...]:
        return self.segments


def check_queries(query_times: list[int], n_answers: int) -> None:
    if n_answers not in (len(query_times), len(query_times) + 1) or n_answers == 0:
        raise EvalError(f"{n_answers} answers do not fit {len(query_times)} query times")
    if any(t < 0 for t in query_times) or any(b <= a for a, b in zip(query_times, query_times[1:], strict=False)):
        raise EvalError(f"query times must be non-negative and increasing, got {query_times}")


def plan_stream(
    segments: list[Path], frame_counts: list[int] | None, query_times: list[int], n_answers: int
) -> list[Step]:
    """What to feed and when to ask, over the segments streamed back to back as one stream of 1 fps frames.

    The question at query time t is asked AFTER frame t was added (frames 0..t seen); a query time at or
    past the stream's last frame never fires. With one more answer than query times, the question is also
    asked once at the end of the stream. Query times need the segments' frame counts (`count_frames`).
    """
    check_queries(query_times, n_answers)
    if not query_times:
        return [Observe(p, None, None) for p in segments] + [Ask(0)]
    if frame_counts is None or len(frame_counts) != len(segments):
        raise EvalError("query times need the frame count of every segment")
    offsets = [0]
    for count in frame_counts:
        offsets.append(offsets[-1] + count)

    def feed(start: int, end: int) -> list[Step]:  # global frames [start, end)
        steps: list[Step] = []
        for path, seg_start, seg_end in zip(segments, offsets, offsets[1:], strict=False):
            lo, hi = max(start, seg_start), min(end, seg_end)
            if lo < hi:
                local_lo, local_hi = (lo - seg_start) / STREAM_FPS, (hi - seg_start) / STREAM_FPS
                steps.append(Observe(path, local_lo or None, None if hi == seg_end else local_hi))
        return steps

    total = offsets[-1]
    steps: list[Step] = []
    position = 0
    for i, t in enumerate(query_times):
        if t >= total:
            break
        steps += feed(position, t + 1) + [Ask(i)]
        position = t + 1
    if n_answers > len(query_times):
        steps += feed(position, total) + [Ask(len(query_times))]
    return steps


def count_frames(path: Path, fps: float = STREAM_FPS) -> int:
    """How many frames a stream reads from `path` at `fps`: frame k (at k / fps s) exists if some video frame
    is at or after it, so the count is floor(last frame time * fps) + 1 (for videos of at least `fps` frames
    per second). Reads packet times only (no decode), from the last keyframe on where the length is known."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            base = stream.start_time or 0
            last = _last_pts(container, stream, seek_to=base + stream.duration if stream.duration else None)
            if last is None:
                raise EvalError(f"{path}: no video frames")
            return int(math.floor(float((last - base) * stream.time_base) * fps + 1e-6)) + 1
    except av.FFmpegError as err:
        raise EvalError(f"{path}: cannot read the video ({err})") from None


def _last_pts(container: Any, stream: Any, seek_to: int | None) -> int | None:
    if seek_to is not None:
        container.seek(seek_to, stream=stream, backward=True)
        last = max((p.pts for p in container.demux(stream) if p.pts is not None), default=None)
        if last is not None:
            return last
        container.seek(0, stream=stream, backward=True)
    return max((p.pts for p in container.demux(stream) if p.pts is not None), default=None)


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
            query_times = tuple(_frame_list(row, "query_times"))
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


def _frame_list(row: datafiles.Row, key: str) -> list[int]:
    values = _number_list(row, key)
    if any(v != int(v) for v in values):
        raise EvalError(f"{row.where}: field {key!r} must hold whole seconds (1 fps frame indices), got {values}")
    return [int(v) for v in values]


def _split_order(split: str) -> tuple[float, str]:
    match = re.match(r"(\d+)", split)
    return (float(match.group(1)) if match else float("inf"), split)


class _VSISuper:
    name: str
    recall: bool
    metric: str
    streaming = True
    default_max_new_tokens = 16

    def __init__(self, frame_counter: Callable[[Path], int] = count_frames) -> None:
        self.frame_counter = frame_counter

    def load(self, data: Path, work_dir: Path) -> list[VSISuperRecord]:
        files = datafiles.record_files(data)
        rows = datafiles.read_rows(files)
        roots = datafiles.media_roots(data, files)
        records = [_parse(row, roots, self.recall) for row in rows]
        datafiles.check_unique([r.id for r in records], rows)
        for record, row in zip(records, rows, strict=True):
            try:  # validate the queries now rather than hours into a run
                check_queries(list(record.query_times), len(record.answers))
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
        """Recall: VSI-Bench multiple choice; Count: float() of the whole (normalised) answer, MRA."""
        if self.recall:
            return metrics.score_multiple_choice(prediction, answer)
        return metrics.score_whole_number(prediction, float(answer))

    def run(
        self, model: StreamingQAModel, record: VSISuperRecord, *, max_new_tokens: int, rooms_hint: bool
    ) -> dict[str, Any]:
        prompt = self.prompt(record, rooms_hint)
        counts = [self.frame_counter(p) for p in record.segments] if record.query_times else None
        steps = plan_stream(list(record.segments), counts, list(record.query_times), len(record.answers))
        predictions: list[str | None] = [None] * len(record.answers)  # None: the query never fired
        session = model.open_stream()
        try:
            for step in steps:
                if isinstance(step, Observe):
                    session.observe_video(step.path, step.start_s, step.end_s)
                else:
                    predictions[step.index] = session.ask(prompt, max_new_tokens=max_new_tokens)
        finally:
            session.close()
        scored = [None if p is None else self.score(p, a) for p, a in zip(predictions, record.answers, strict=True)]
        scores = [None if s is None else s[1] for s in scored]
        asked = [x for x in scores if x is not None]
        return {
            "id": record.id,
            "split": record.split,
            "prompt": prompt,
            "query_times": list(record.query_times),
            "predictions": predictions,
            "extracted": [None if s is None else s[0] for s in scored],
            "answers": list(record.answers),
            "scores": scores,
            "score": metrics.mean(asked) if asked else None,
        }

    def summarize(self, results: list[dict[str, Any]]) -> Summary:
        """Per duration split: the flat mean over every question asked in it (streaming Count: over all fired
        query times of all videos, not a mean of per-video means). No single overall number is defined."""
        by_split: dict[str, list[float]] = defaultdict(list)
        unfired = 0
        for result in results:
            by_split[result["split"]].extend(s for s in result["scores"] if s is not None)
            unfired += sum(s is None for s in result["scores"])
        rows = [
            ScoreRow(s, self.metric, metrics.mean(v), len(v))
            for s, v in sorted(by_split.items(), key=lambda kv: _split_order(kv[0]))
            if v
        ]
        notes = []
        if unfired:
            notes.append(f"{unfired} query time(s) at or past the end of their video never fired (not scored)")
        return Summary(
            bench=self.name,
            rows=rows,
            overall=None,
            overall_rule="none: VSI-SUPER is reported per stream duration",
            n_samples=len(results),
            notes=notes,
        )


class VSISuperRecall(_VSISuper):
    name = "vsisuper_recall"
    recall = True
    metric = "accuracy"


class VSISuperCount(_VSISuper):
    name = "vsisuper_count"
    recall = False
    metric = "MRA"
