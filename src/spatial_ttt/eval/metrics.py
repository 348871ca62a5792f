"""Official answer extraction and scores shared by the video benchmarks (VSI-Bench, VSI-SUPER).

The rules follow the reference evaluation (lmms-eval task `vsibench`, as used for the published
numbers); see docs/evaluation.md for where other harness versions differ.
"""

from __future__ import annotations

import math

import numpy as np

# MRA thresholds θ = 0.50, 0.55, ..., 0.95. Built exactly as the reference does (np.linspace with
# int((end - start) / step + 2) = 10 points) so that borderline cases compare bit-for-bit the same.
MRA_THRESHOLDS = np.linspace(0.5, 0.95, int((0.95 - 0.5) / 0.05 + 2))


def fuzzy_match(prediction: str) -> str:
    """First " "-separated token, trailing dots removed, stripped ("B. chair" -> "B").

    Splits on a single space exactly like the reference, so a leading space yields "" (scored wrong).
    """
    return prediction.split(" ")[0].rstrip(".").strip()


def to_float(text: str) -> float | None:
    """float(text), or None where it does not parse (or is nan/inf, which cannot be scored)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def exact_match(extracted: str, ground_truth: str) -> float:
    return 1.0 if extracted.lower() == ground_truth.lower() else 0.0


def mean_relative_accuracy(pred: float, gt: float) -> float:
    """MRA = mean over θ of 1[|pred - gt| / gt <= 1 - θ].

    gt == 0 never occurs in VSI-Bench (the reference would divide by zero); we score it like the
    VSI-SUPER reference does: 1 if pred == 0 else 0.
    """
    if gt == 0:
        return 1.0 if pred == 0 else 0.0
    relative_error = abs(pred - gt) / gt
    return float((relative_error <= 1 - MRA_THRESHOLDS).mean())


def score_multiple_choice(prediction: str, ground_truth: str) -> tuple[str, float]:
    """(extracted answer, 0/1): the first token must equal the option letter, case-insensitively."""
    extracted = fuzzy_match(prediction)
    return extracted, exact_match(extracted, ground_truth)


def score_numerical(prediction: str, ground_truth: float) -> tuple[str, float]:
    """(extracted answer, MRA); a first token that is not a number scores 0."""
    extracted = fuzzy_match(prediction)
    value = to_float(extracted)
    return extracted, 0.0 if value is None else mean_relative_accuracy(value, ground_truth)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)
