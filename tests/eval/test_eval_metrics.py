import pytest

from spatial_ttt.eval.metrics import (
    MRA_THRESHOLDS,
    fuzzy_match,
    mean_relative_accuracy,
    normalize_answer,
    score_multiple_choice,
    score_numerical,
    score_whole_number,
    to_float,
    unwrap_answer,
)


def test_thresholds_are_the_ten_official_ones():
    assert [round(float(t), 2) for t in MRA_THRESHOLDS] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


# Hand count: MRA = (number of θ in 0.50..0.95 with |pred-gt|/gt <= 1-θ) / 10.
@pytest.mark.parametrize(
    "pred, gt, expected",
    [
        (10, 10, 1.0),  # error 0: all 10 thresholds
        (9, 10, 0.9),  # error 0.10: θ = 0.50..0.90 pass (9), 0.95 fails
        (11, 10, 0.9),  # symmetric
        (9.5, 10, 1.0),  # error 0.05 <= 1-0.95 (0.0500...04 in floats)
        (3, 4, 0.6),  # error 0.25: θ = 0.50..0.75 (6)
        (7, 10, 0.5),  # error 0.30: θ = 0.50..0.70 (5)
        (6, 10, 0.3),  # error 0.40: θ = 0.50, 0.55, 0.60
        (5, 10, 0.1),  # error 0.50: only θ = 0.50 (this is where "<=" differs from "<")
        (15, 10, 0.1),
        (4, 10, 0.0),  # error 0.60: none
        (0, 2, 0.0),  # error 1.0
    ],
)
def test_mra_by_hand(pred, gt, expected):
    assert mean_relative_accuracy(pred, gt) == pytest.approx(expected, abs=1e-12)


def test_mra_reproduces_reference_float_rounding():
    # Error 0.20 passes θ = 0.50..0.80 on paper (0.7), but 1 - 0.8 is 0.19999999999999996 in
    # floating point, so the reference (and we, to stay comparable) count 6 thresholds.
    assert mean_relative_accuracy(8, 10) == pytest.approx(0.6)
    assert mean_relative_accuracy(12, 10) == pytest.approx(0.6)


def test_mra_zero_ground_truth():
    assert mean_relative_accuracy(0, 0) == 1.0
    assert mean_relative_accuracy(1, 0) == 0.0


@pytest.mark.parametrize(
    "prediction, extracted",
    [
        ("B", "B"),
        ("B.", "B"),
        ("B. table", "B"),
        ("B...", "B"),
        ("3.5 meters", "3.5"),
        (" B", ""),  # split on one space like the reference (scoring strips first, see below)
        ("3\nchairs", "3\nchairs"),  # a newline does not split
        ("B\n", "B"),
        ("", ""),
    ],
)
def test_fuzzy_match(prediction, extracted):
    assert fuzzy_match(prediction) == extracted


def test_multiple_choice_is_case_insensitive_first_token():
    assert score_multiple_choice("b. table", "B") == ("b", 1.0)
    assert score_multiple_choice(" B", "B") == ("B", 1.0)  # the harness strips before extraction
    assert score_multiple_choice("\n B.\n", "B") == ("B", 1.0)
    assert score_multiple_choice("The answer is B", "B") == ("The", 0.0)
    assert score_multiple_choice("A", "B") == ("A", 0.0)


def test_numerical_unparseable_scores_zero():
    assert score_numerical("about 3", 3.0) == ("about", 0.0)
    assert score_numerical("three", 3.0) == ("three", 0.0)
    assert score_numerical("nan", 3.0) == ("nan", 0.0)
    assert score_numerical("3.", 3.0) == ("3", 1.0)
    assert score_numerical("9 chairs", 10.0) == ("9", pytest.approx(0.9))


def test_to_float():
    assert to_float("2.5") == 2.5
    assert to_float("x") is None
    assert to_float("inf") is None


@pytest.mark.parametrize(
    "raw, unwrapped",
    [
        ("<answer>B</answer>", "B"),
        ("think first <answer>\n  3.5 \n</answer> tail", "3.5"),  # whitespace around dropped, across lines
        ("<answer>A</answer> <answer>B</answer>", "A"),  # the first one
        ("\\boxed{ 12 }", "12"),
        ("\\boxed{\\frac{1}{2}}", "\\frac{1"),  # up to the first "}", as the reference's regex
        ("<answer>C</answer> \\boxed{D}", "C"),  # <answer> wins over \boxed
        ("<answer>C", "<answer>C"),  # unclosed: unchanged
        ("  B. table ", "  B. table "),  # unwrap alone does not strip
    ],
)
def test_unwrap_answer(raw, unwrapped):
    assert unwrap_answer(raw) == unwrapped


def test_normalize_is_unwrap_then_strip():
    assert normalize_answer("  B. table \n") == "B. table"
    assert normalize_answer("\n<answer> B </answer>\n") == "B"
    assert normalize_answer("x <answer></answer>") == ""


def test_scoring_takes_raw_text():
    assert score_multiple_choice("<answer>b. table</answer>", "B") == ("b", 1.0)
    assert score_multiple_choice("The answer is \\boxed{B}", "B") == ("B", 1.0)
    assert score_numerical("<answer> 9 meters</answer>", 10.0) == ("9", pytest.approx(0.9))
    assert score_numerical("  \n4", 4.0) == ("4", 1.0)


@pytest.mark.parametrize(
    "raw, gt, extracted, score",
    [
        ("9", 10.0, "9", 0.9),
        (" 9\n", 10.0, "9", 0.9),  # stripped first: float(" 9\n") would parse anyway
        ("9.", 10.0, "9.", 0.9),  # Python float accepts "9."
        ("3 chairs", 3.0, "3 chairs", 0.0),  # the WHOLE answer must parse (no first-token rule)
        ("3.", 3.0, "3.", 1.0),
        ("three", 3.0, "three", 0.0),
        ("1e1", 10.0, "1e1", 1.0),
        ("<answer>5</answer>", 4.0, "5", 0.6),  # error 0.25: θ = 0.50..0.75
        ("\\boxed{4}", 4.0, "4", 1.0),
        ("nan", 3.0, "nan", 0.0),
    ],
)
def test_whole_number_score_for_vsisuper_count(raw, gt, extracted, score):
    assert score_whole_number(raw, gt) == (extracted, pytest.approx(score))
