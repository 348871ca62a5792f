import io

import pytest
from eval_fixtures import FakeVideoModel, touch, write_jsonl

from spatial_ttt.eval import EvalError, run_benchmark
from spatial_ttt.eval.mindcube import MindCube, extract_answer, score, setting_of


@pytest.mark.parametrize(
    "text, letter",
    [
        ("<answer>B. Under</answer>", "B"),
        ("A. left? No: C. right", "C"),  # "X." rule, last occurrence
        ("The answer is D", "D"),
        ("E", "E"),
        ("<Answer>My answer is C</Answer>", "C"),
        ("between A and B", "A"),  # only the last fallback matches: first bare letter of the last line
        ("The answer is C, not D", "C"),  # "answer is X"; no rule takes a letter merely followed by the end
        ("DVD player", None),  # no rule matches a letter inside a word
        ("Answer: B", "B"),  # letter at a line start, after "Answer: "
        ("C\nD", "C"),  # line-start rule: the "\n" after C is consumed, so D is not at a line start
        ("<Answer> A or B", "B"),  # <Answer> section: last bare letter
        ("<Answer>my answer is A, or B</Answer>", "A"),  # section rule "my answer is" before bare letters
        ("**B**", "B"),  # starred
        ('I pick "C"', "C"),
        ("no letter here", None),
        ("", None),
    ],
)
def test_extract_answer(text, letter):
    assert extract_answer(text) == letter


def test_score_takes_raw_text():
    # unwrap (<answer> content) and strip first, then the official extraction
    assert score("<answer>\nThe answer is C, not D\n</answer>", "C") == ("C", 1.0)
    assert score("\\boxed{B}", "B") == ("B", 1.0)
    assert score("  DVD player ", "D") == (None, 0.0)


@pytest.mark.parametrize(
    "sample_id, setting",
    [
        ("rotation_0001", "rotation"),
        ("aroundnew_12_3", "around"),
        ("among_group3_5", "among"),
        ("translation_2", "translation"),
        ("xyz_1", "other"),
    ],
)
def test_setting_from_id(sample_id, setting):
    assert setting_of(sample_id) == setting


CASES = [  # id, gt, model reply
    ("rotation_1", "A", "<answer>A. Left</answer>"),
    ("rotation_2", "B", "B"),
    ("rotation_3", "C", "A."),
    ("among_1", "D", "D. behind"),
    ("around_1", "A", "B"),
    ("aroundnew_2", "B", "I cannot tell"),
]


def _records():
    return [
        {
            "id": i,
            "question": f"<image><image>Q {i}: where is the cup? A. Left B. Right C. Front D. Behind",
            "images": [f"other_all_image/{i}/0.png", f"other_all_image/{i}/1.png"],
            "gt_answer": gt,
            "category": ["x"],
        }
        for i, gt, _ in CASES
    ]


def test_accuracy_by_setting_by_hand(tmp_path):
    root = tmp_path / "MindCube"
    write_jsonl(root / "raw" / "MindCube_tinybench.jsonl", _records())
    for i, _, _ in CASES:
        touch(root / "other_all_image" / i / "0.png")
        touch(root / "other_all_image" / i / "1.png")
    model = FakeVideoModel({f"Q {i}:": reply for i, _, reply in CASES})
    summary = run_benchmark(
        "mindcube-tiny",
        root / "raw" / "MindCube_tinybench.jsonl",
        model,
        tmp_path / "o",
        rooms_hint=False,
        progress=False,
    )
    # rotation 2 of 3, among 1 of 1, around 0 of 2; overall over questions = 3/6 (not the setting mean 5/9)
    assert [(r.name, r.n) for r in summary.rows] == [("rotation", 3), ("around", 2), ("among", 1)]
    assert [r.score for r in summary.rows] == pytest.approx([2 / 3, 0.0, 1.0])
    assert summary.overall == pytest.approx(0.5) and summary.bench == "mindcube_tiny"

    video, prompt, max_new_tokens = model.calls[0]
    assert video == [root / "other_all_image/rotation_1/0.png", root / "other_all_image/rotation_1/1.png"]
    assert prompt.startswith("[Task]\nYour task is to analyze the spatial arrangement")
    assert prompt.endswith("[Question]\nQ rotation_1: where is the cup? A. Left B. Right C. Front D. Behind")
    assert "<image>" not in prompt and max_new_tokens == 4096


def test_embedded_images_from_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    rows = [
        {
            "id": "among_7",
            "input_prompt": "<image>Which? A. x B. y",
            "gt_answer": "B",
            "images": [{"bytes": buf.getvalue(), "path": "view0.png"}],
        }
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    records = MindCube().load(tmp_path / "test.parquet", tmp_path / "out")
    assert records[0].prompt == "Which? A. x B. y"
    assert records[0].images == (tmp_path / "out" / "images" / "among_7_0.png",)
    assert Image.open(records[0].images[0]).size == (4, 4)


def test_bad_records_are_named(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [_records()[0] | {"gt_answer": "right"}])
    with pytest.raises(EvalError, match=r"m.jsonl record #0: gt_answer 'right' is not a letter"):
        MindCube().load(path, tmp_path)
    path = write_jsonl(tmp_path / "n.jsonl", [_records()[0] | {"images": [3]}])
    with pytest.raises(EvalError, match=r"n.jsonl record #0: images\[0\] is neither a path"):
        MindCube().load(path, tmp_path)
