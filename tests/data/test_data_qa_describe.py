import math
import re

import pytest

from spatial_ttt.data.describe import describe_scene, plural
from spatial_ttt.data.qa import QUESTION_TYPES, generate_qa, route_planning
from spatial_ttt.data.sft import build_sft_records

import numpy as np

# closest-point distances from the bed, computed by hand in test_geometry
BED_DIST = {"table": 1.5, "chair": 1.25, "lamp": math.hypot(1.9, 0.25), "tv": math.hypot(2.25, 0.4), "sofa": 3.4}
# (stand, face, query) -> hard label, from the angles worked out in test_geometry and below
HARD = {("bed", "table", "sofa"): "front-left", ("table", "sofa", "bed"): "back-left",
        ("sofa", "bed", "tv"): "front-right", ("sofa", "bed", "table"): "front-left"}


def _by_type(qas):
    out = {}
    for q in qas:
        out.setdefault(q.question_type, []).append(q)
    return out


def test_numerical_answers(hand_scene):
    qas = _by_type(generate_qa(hand_scene, seed=0, per_type=20))
    counting = qas["object_counting"]
    assert [(q.question, q.answer) for q in counting] == [("How many chair(s) are in this room?", "2")]
    assert [q.answer for q in qas["room_size_estimation"]] == ["24.0"]
    sizes = {re.search(r"of the (\w+),", q.question).group(1): q.answer for q in qas["object_size_estimation"]}
    assert sizes == {"bed": "200", "table": "100", "lamp": "40", "sofa": "100", "tv": "100"}
    dists = {tuple(sorted(re.findall(r"the (\w+)", q.question.split("between")[1]))): q.ground_truth
             for q in qas["object_abs_distance"]}
    assert dists[("bed", "table")] == pytest.approx(1.5)
    assert dists[("bed", "lamp")] == pytest.approx(math.hypot(1.9, 0.25))
    assert dists[("lamp", "table")] == 0.0
    assert len(dists) == 10  # every pair of the five unique categories


def test_multiple_choice_answers(hand_scene):
    qas = generate_qa(hand_scene, seed=1, per_type=50)
    by = _by_type(qas)
    for q in by["object_rel_distance"]:
        primary = q.question.rsplit("closest to the ", 1)[1].rstrip("?")
        if primary == "bed":
            choices = re.search(r"\((.*)\)", q.question).group(1).split(", ")
            assert q.ground_truth == min(choices, key=BED_DIST.get)
    assert any("closest to the bed" in q.question for q in by["object_rel_distance"])
    checked = 0
    for q in by["object_rel_direction_hard"]:
        names = tuple(hand_scene.object(i).category for i in q.object_ids)
        if names in HARD:
            assert q.ground_truth == HARD[names]
            checked += 1
    assert checked >= 2
    # first seen: bed 0, table .5, lamp 1, sofa 1.5, chair and tv 2.0 (ties are never asked together)
    first = {"bed": 0, "table": 0.5, "lamp": 1.0, "sofa": 1.5, "chair": 2.0, "tv": 2.0}
    for q in by["obj_appearance_order"]:
        cats = q.question.split("video: ")[1].rstrip("?").split(", ")
        assert not {"chair", "tv"} <= set(cats)
        assert q.ground_truth == ", ".join(sorted(cats, key=first.get))
    assert by["obj_appearance_order"]
    for q in qas:  # options: distinct, exactly one is the answer, the letter points at it
        if q.options:
            texts = [o.split(". ", 1)[1] for o in q.options]
            assert len(set(texts)) == len(texts) and texts.count(q.ground_truth) == 1
            assert q.options["ABCDEFGH".index(q.answer)] == f"{q.answer}. {q.ground_truth}"
            assert "Answer with the option's letter" in q.prompt()


def test_route_planning_turns(hand_scene):
    qas = route_planning(hand_scene, np.random.default_rng(0), k=200, tries=3000)
    assert qas
    names = {q.object_ids: [hand_scene.object(i).category for i in q.object_ids] for q in qas}
    # bed (1,1) -> table (4,1) -> sofa (5.5,3.5): heading +x then (1.5, 2.5): a 59 degree left turn
    hit = [q for q in qas if names[q.object_ids] == ["bed", "table", "sofa"]]
    assert hit and hit[0].ground_truth == "Turn Left"
    assert "1. Go forward until the table 2. [please fill in] 3. Go forward until the sofa." in hit[0].question
    # sofa -> table -> bed: heading (-1.5,-2.5) then (-3, 0): 59 degrees to the right
    hit = [q for q in qas if names[q.object_ids] == ["sofa", "table", "bed"]]
    assert hit and hit[0].ground_truth == "Turn Right"


def test_qa_determinism(hand_scene):
    assert generate_qa(hand_scene, 3) == generate_qa(hand_scene, 3)
    assert generate_qa(hand_scene, 3) != generate_qa(hand_scene, 4)
    assert {q.question_type for q in generate_qa(hand_scene, 0)} == set(QUESTION_TYPES)
    with pytest.raises(ValueError, match="unknown question types"):
        generate_qa(hand_scene, 0, types=("object_color",))


def test_description_content(hand_scene):
    text = describe_scene(hand_scene, seed=0)
    assert text == describe_scene(hand_scene, seed=0)
    assert "24.0 square meters" in text or "24.0 m²" in text
    assert "6.0" in text and "4.0" in text
    # inventory in order of first appearance, with counts
    assert "a bed, a table, a lamp, a sofa, 2 chairs and a tv" in text
    assert "it sits on the table" in text
    # from the first camera (at y=-1 looking +y), the table lies 1.5 m to the right of the bed
    assert re.search(r"the table \(first seen at 0\.5 s\)[^;]*; it (is 1\.5 m to the right of the bed|"
                     r"lies to the right of the bed, 1\.5 m away)", text)
    assert "the first chair" in text.lower() and "the second chair" in text.lower()
    assert "first seen at 1.5 s" in text  # the sofa


def test_description_phrasings_vary_with_seed(hand_scene):
    texts = {describe_scene(hand_scene, s) for s in range(6)}
    assert len(texts) >= 3


def test_plural():
    assert [plural(w, 2) for w in ("chair", "bookshelf", "trash can", "box", "lamp")] == \
        ["chairs", "bookshelves", "trash cans", "boxes", "lamps"]


def test_sft_records_format(hand_scene):
    recs = build_sft_records(hand_scene, "videos/hand.mp4", seed=0, qa_per_type=1)
    assert recs[0]["question_type"] == "scene_description"
    for r in recs:
        assert r["video"] == "videos/hand.mp4"
        human, gpt = r["conversations"]
        assert human["from"] == "human" and human["value"].startswith("<video>\n")
        assert gpt["from"] == "gpt" and gpt["value"]
    assert len({r["id"] for r in recs}) == len(recs)
    assert {r["question_type"] for r in recs} == set(QUESTION_TYPES) | {"scene_description"}
