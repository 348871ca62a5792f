"""MindCube / MindCube-Tiny: multi-view spatial reasoning, multiple-choice accuracy per setting.

Release layout (MindCube repository / Hugging Face): JSONL records with `id`, `question` (options are
written inside the question text), `images` (paths relative to the data folder) and `gt_answer` (a
letter); the lmms-eval copy is parquet with `input_prompt` and the images embedded as bytes. Both work.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spatial_ttt.eval import datafiles, metrics, prompts
from spatial_ttt.eval.errors import EvalError
from spatial_ttt.eval.interfaces import VideoQAModel
from spatial_ttt.eval.results import ScoreRow, Summary

# Settings in the order the MindCube paper reports them; the setting is read from the record id.
SETTINGS = ("rotation", "around", "among")
_ID_SETTINGS = ("around", "rotation", "translation", "among")  # first substring of the id that matches wins

# Answer extraction of the official MindCube `extract_answer` (src/evaluation/core/extractors.py; the list
# lmms-eval's mindcube task copies; docs/evaluation.md says which MindCube commit differs): rules in priority
# order, and within a rule the LAST match wins. The official lists also hold "[Mm]y answer is ([A-E])\."
# right after "[Mm]y answer is ([A-E])"; it can only match where the latter did, so it is left out here.
_LETTER_DOT = re.compile(r"([A-E])\.")
_ANSWER_SECTION = re.compile(r"<Answer>(.*?)(?:<|$)", re.DOTALL)
_IN_ANSWER_SECTION = [
    re.compile(r"[Mm]y answer is ([A-E])"),
    re.compile(r"[Tt]he answer is ([A-E])"),
    re.compile(r"(?:Answer: )?([A-E])\."),
    re.compile(r"\b([A-E])\b"),
]
_WHOLE_TEXT = [
    re.compile(r"(?:Answer: )?([A-E])\. [A-Za-z0-9 \-\(\)'\",]+(?=(?:\n|$|\.|\"))"),  # letter + description
    re.compile(r"(?:Answer: )?([A-E])\. [A-Za-z0-9 \-\(\)'\"]+"),  # letter + partial description
    re.compile(r"(?:^|\n)(?:Answer: )?([A-E])(?:\.|$|\s)"),  # letter at a line start
    re.compile(r"[\*\"]([A-E])[\*\"]"),  # quoted or starred letter
    re.compile(r"\bAnswer:?\s*([A-E])\b"),
    re.compile(r"[Mm]y answer is ([A-E])"),
    re.compile(r"answer is ([A-E])"),
]
_LINE_WITH_DESCRIPTION = re.compile(r"([A-E])\. [A-Za-z0-9 \-\(\)'\",]+")
_BARE_LETTER = re.compile(r"\b([A-E])\b")


def extract_answer(text: str) -> str | None:
    """The answer letter (A-E) of a normalised response (see `score`), or None: the official rules only,
    so "The answer is C, not D" gives C and "DVD player" gives None."""
    if not text:
        return None
    if found := _LETTER_DOT.findall(text):
        return found[-1]
    if section := _ANSWER_SECTION.search(text):
        for pattern in _IN_ANSWER_SECTION:
            if found := pattern.findall(section.group(1)):
                return found[-1]
    for pattern in _WHOLE_TEXT:
        if found := pattern.findall(text):
            return found[-1]
    lines = text.split("\n")
    described = [m.group(1) for line in lines if (m := _LINE_WITH_DESCRIPTION.search(line))]
    if described:
        return described[-1]
    for line in reversed(lines):
        if m := _BARE_LETTER.search(line):
            return m.group(1)
    return None


def score(raw: str, ground_truth: str) -> tuple[str | None, float]:
    """(extracted letter or None, 0/1) of the model's raw text: the wrapper's unwrap and the harness's strip
    first (metrics.normalize_answer), then the official extraction, then an exact letter match."""
    extracted = extract_answer(metrics.normalize_answer(raw))
    return extracted, 1.0 if extracted == ground_truth else 0.0


def setting_of(sample_id: str) -> str:
    lowered = sample_id.lower()
    return next((s for s in _ID_SETTINGS if s in lowered), "other")


@dataclass(frozen=True)
class MindCubeRecord:
    id: str
    setting: str
    prompt: str  # without the rooms hint
    images: tuple[Path, ...]
    gt_answer: str

    @property
    def media(self) -> tuple[Path, ...]:
        return self.images


def _parse(row: datafiles.Row, roots: list[Path], image_dir: Path) -> MindCubeRecord:
    sample_id = datafiles.record_id(row)
    if isinstance(row.fields.get("input_prompt"), str):
        prompt = prompts.strip_image_placeholders(row.fields["input_prompt"])
    else:
        prompt = prompts.mindcube_prompt(datafiles.require(row, "question", str))
    raw_images = datafiles.require(row, "images", (list, tuple))
    if not raw_images:
        raise EvalError(f"{row.where}: field 'images' is empty")
    images = []
    for k, image in enumerate(raw_images):
        if isinstance(image, str):
            images.append(datafiles.resolve_media(image, roots))
        elif isinstance(image, dict) and isinstance(image.get("bytes"), bytes):
            images.append(_materialize(image, image_dir, sample_id, k))
        elif isinstance(image, dict) and isinstance(image.get("path"), str):
            images.append(datafiles.resolve_media(image["path"], roots))
        else:
            raise EvalError(f"{row.where}: images[{k}] is neither a path nor an embedded image")
    gt = datafiles.require(row, "gt_answer", str).strip()
    if not re.fullmatch(r"[A-E]", gt):
        raise EvalError(f"{row.where}: gt_answer {gt!r} is not a letter A-E")
    return MindCubeRecord(sample_id, setting_of(sample_id), prompt, tuple(images), gt)


def _materialize(image: dict[str, Any], image_dir: Path, sample_id: str, k: int) -> Path:
    """Embedded image bytes -> a file, since the model takes image paths."""
    suffix = Path(image.get("path") or "").suffix or ".png"
    safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", sample_id)
    path = image_dir / f"{safe_id}_{k}{suffix}"
    if not path.exists():
        image_dir.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image["bytes"])
    return path


class MindCube:
    streaming = False
    # lmms-eval's MindCube task setting; free-form answers can be long before the letter.
    default_max_new_tokens = 4096

    def __init__(self, name: str = "mindcube") -> None:
        self.name = name

    def load(self, data: Path, work_dir: Path) -> list[MindCubeRecord]:
        files = datafiles.record_files(data)
        rows = datafiles.read_rows(files)
        roots = datafiles.media_roots(data, files)
        records = [_parse(row, roots, work_dir / "images") for row in rows]
        datafiles.check_unique([r.id for r in records], rows)
        return records

    def run(
        self, model: VideoQAModel, record: MindCubeRecord, *, max_new_tokens: int, rooms_hint: bool
    ) -> dict[str, Any]:
        prompt = prompts.with_rooms_hint(record.prompt, rooms_hint)
        prediction = model.answer(list(record.images), prompt, max_new_tokens=max_new_tokens)
        extracted, value = score(prediction, record.gt_answer)
        return {
            "id": record.id,
            "setting": record.setting,
            "prompt": prompt,
            "prediction": prediction,
            "extracted": extracted,
            "ground_truth": record.gt_answer,
            "score": value,
        }

    def summarize(self, results: list[dict[str, Any]]) -> Summary:
        """Accuracy per setting; overall = accuracy over all questions."""
        by_setting: dict[str, list[float]] = defaultdict(list)
        for result in results:
            by_setting[result["setting"]].append(result["score"])
        order = [*SETTINGS, *sorted(set(by_setting) - set(SETTINGS))]
        rows = [
            ScoreRow(s, "accuracy", metrics.mean(by_setting[s]), len(by_setting[s])) for s in order if s in by_setting
        ]
        return Summary(
            bench=self.name,
            rows=rows,
            overall=metrics.mean([r["score"] for r in results]) if results else None,
            overall_rule="accuracy over all questions",
            n_samples=len(results),
        )
