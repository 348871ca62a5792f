"""Answer normalisation, extraction and scores shared by the benchmarks (VSI-Bench, VSI-SUPER, MindCube).

Every scoring function takes the model's RAW text and normalises it itself (`normalize_answer`), so a
score never depends on which caller cleaned the text. Sources of each rule: docs/evaluation.md.
"""

from __future__ import annotations

import math
import re

import numpy as np

# MRA thresholds θ = 0.50, 0.55, ..., 0.95. Built exactly as the reference does (np.linspace with
# int((end - start) / step + 2) = 10 points) so that borderline cases compare bit-for-bit the same.
MRA_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))

# The reference model wrapper's unwrap of reasoning-style answers (lmms-eval parse_reasoning_model_answer):
# the first <answer>...</answer>, else the first \boxed{...} (up to the first "}"), whitespace around the
# content dropped, across lines.
_ANSWER_TAG = re.compile(r"<answer>\s*(.*?)\s*</answer>", re.DOTALL)
_BOXED = re.compile(r"\\boxed\{\s*(.*?)\s*\}", re.DOTALL)


def unwrap_answer(text: str) -> str:
    """Content of the first <answer>...</answer>, else of the first \\boxed{...}, else `text` unchanged."""
    match = _ANSWER_TAG.search(text) or _BOXED.search(text)
    return match.group(1) if match else text


def normalize_answer(raw: str) -> str:
    """What the reference scores: the wrapper's unwrap, then the harness's strip (Task.process_results)."""
    return unwrap_answer(raw).strip()


def fuzzy_match(answer: str) -> str:
    """First " "-separated token, trailing dots removed, stripped ("B. chair" -> "B").

    Splits on a single space exactly like the reference (so "3\\nchairs" stays one token).
    """
    return answer.split(" ")[0].rstrip(".").strip()


def to_float(text: str) -> float | None:
    """float(text), or None where it does not parse (or is nan/inf, which score 0 anyway)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def exact_match(extracted: str, ground_truth: str) -> float:
    return 1.0 if extracted.lower() == ground_truth.lower() else 0.0


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """MRA = mean over θ of 1[|pred - gt| / gt <= 1 - θ].

    gt == 0 never occurs in VSI-Bench (the reference would divide by zero); we score it 1 if pred == 0
    else 0.
    """
    if gt == 0:
        return 1.0 if pred == 0 else 0.0
    relative_error = abs(pred - gt) / gt
    return float((relative_error <= 1 - MRA_THRESHOLDS).mean())


def score_multiple_choice(raw: str, ground_truth: str) -> tuple[str, float]:
    """(extracted answer, 0/1): the first token must equal the option letter, case-insensitively."""
    extracted = fuzzy_match(normalize_answer(raw))
    return extracted, exact_match(extracted, ground_truth)


def score_numerical(raw: str, ground_truth: float) -> tuple[str, float]:
    """VSI-Bench numerical: (first token, MRA); a first token that is not a number scores 0."""
    extracted = fuzzy_match(normalize_answer(raw))
    value = to_float(extracted)
    return extracted, 0.0 if value is None else mean_relative_accuracy(value, ground_truth)


def score_whole_number(raw: str, ground_truth: float) -> tuple[str, float]:
    """VSI-SUPER Count: (answer, MRA of float(answer)) on the WHOLE answer; "3 chairs" does not parse and
    scores 0 (the reference crashes there)."""
    answer = normalize_answer(raw)
    value = to_float(answer)
    return answer, 0.0 if value is None else mean_relative_accuracy(value, ground_truth)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
