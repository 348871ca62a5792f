"""Spatial QA with answers computed from scene geometry, covering the VSI-Bench question types.

Question wording follows the templates of the VSI-Bench paper (Yang et al. 2024, appendix table 4); prompts end
with the lmms-eval style instructions (MC: answer with the option's letter; numerical: a single word or phrase).
Each type has its own random stream derived from (seed, type), so asking for more of one type never changes
another, and a seed fixes every question.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .geometry import (
    box_distance, direction_label, egocentric_angle, near_boundary, signed_angle, turn_label, DIRECTION_LEVELS,
)
from .scene import Scene, SceneObject

MC_TYPES = ("object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard",
            "object_rel_distance", "route_planning", "obj_appearance_order")
NUMERICAL_TYPES = ("object_abs_distance", "object_counting", "object_size_estimation", "room_size_estimation")
QUESTION_TYPES = MC_TYPES + NUMERICAL_TYPES

MC_POST_PROMPT = "Answer with the option's letter from the given choices directly."
NA_POST_PROMPT = "Please answer the question using a single word or phrase."


@dataclass(frozen=True)
class QA:
    question_type: str
    question: str  # the bare question, without options or answer instructions
    answer: str  # what the assistant turn says: an option letter, or a number
    ground_truth: str | float  # the option text or the exact number behind the answer
    options: tuple[str, ...] = ()  # formatted "A. chair"; empty for numerical questions
    object_ids: tuple[int, ...] = field(default=())

    def prompt(self) -> str:
        """Question as the user turn shows it: question, options (MC only), answer instruction."""
        if self.options:
            return f"{self.question}\nOptions:\n" + "\n".join(self.options) + f"\n{MC_POST_PROMPT}"
        return f"{self.question}\n{NA_POST_PROMPT}"


def multiple_choice(rng: np.random.Generator, answer: str, distractors: list[str]) -> tuple[tuple[str, ...], str]:
    """Shuffle answer among distinct distractors; return formatted options and the answer's letter."""
    if answer in distractors or len(set(distractors)) != len(distractors):
        raise ValueError(f"distractors must be distinct and differ from the answer {answer!r}: {distractors}")
    choices = [answer, *distractors]
    order = rng.permutation(len(choices))
    shuffled = [choices[i] for i in order]
    letters = "ABCDEFGH"
    return tuple(f"{letters[i]}. {c}" for i, c in enumerate(shuffled)), letters[shuffled.index(answer)]


def _unique(scene: Scene) -> list[SceneObject]:
    """Objects whose category occurs exactly once: the only ones a question can name without ambiguity."""
    cats = scene.categories()
    return [o for o in scene.objects if len(cats[o.category]) == 1]


def _pick(rng: np.random.Generator, candidates: list, k: int) -> list:
    if len(candidates) <= k:
        return list(candidates)
    return [candidates[i] for i in sorted(rng.choice(len(candidates), size=k, replace=False))]


def _fmt(x: float, decimals: int) -> str:
    return f"{round(x, decimals):.{decimals}f}" if decimals else str(int(round(x)))


# ---------------------------------------------------------------- numerical types


def object_counting(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    # VSI-Bench leaves out categories seen once; several rooms -> the whole space is counted
    where = "in this room" if len(scene.rooms) == 1 else "in total across all the rooms shown"
    out = []
    for cat, objs in sorted(scene.categories().items()):
        if len(objs) >= 2:
            out.append(QA("object_counting", f"How many {cat}(s) are {where}?", str(len(objs)), float(len(objs)),
                          object_ids=tuple(o.id for o in objs)))
    return _pick(rng, out, k)


def object_abs_distance(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    pairs = list(itertools.combinations(_unique(scene), 2))
    out = []
    for a, b in _pick(rng, pairs, k):
        d = box_distance(a.box, b.box)
        out.append(QA("object_abs_distance",
                      f"Measuring from the closest point of each object, what is the direct distance between the "
                      f"{a.category} and the {b.category} (in meters)?", _fmt(d, 1), d, object_ids=(a.id, b.id)))
    return out


def object_size_estimation(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    out = []
    for o in _pick(rng, _unique(scene), k):
        cm = max(o.box.size) * 100
        out.append(QA("object_size_estimation",
                      f"What is the length of the longest dimension (length, width, or height) of the {o.category}, "
                      f"measured in centimeters?", _fmt(cm, 0), cm, object_ids=(o.id,)))
    return out


def room_size_estimation(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    area = scene.total_area()
    return [QA("room_size_estimation", "What is the size of this room (in square meters)? If multiple rooms are "
               "shown, estimate the size of the combined space.", _fmt(area, 1), area)][:k]


# ---------------------------------------------------------------- multiple-choice types


def object_rel_distance(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    # VSI-Bench: a unique primary object; four other categories, each at its nearest instance; ambiguous when two
    # of the four distances are within 30 cm (rooms over 40 m^2) or 15 cm
    thresh = 0.3 if scene.total_area() > 40 else 0.15
    cats = scene.categories()
    out = []
    unique = _unique(scene)
    for primary in (unique[i] for i in rng.permutation(len(unique))):
        others = sorted(c for c in cats if c != primary.category)
        if len(others) < 4:
            continue
        dist = {c: min(box_distance(primary.box, o.box) for o in cats[c]) for c in others}
        for _ in range(20):
            choice = [others[i] for i in rng.choice(len(others), size=4, replace=False)]
            ds = sorted(dist[c] for c in choice)
            if min(b - a for a, b in zip(ds, ds[1:])) < thresh:
                continue
            answer = min(choice, key=dist.get)
            letters = "ABCD"
            out.append(QA("object_rel_distance",
                          f"Measuring from the closest point of each object, which of these objects "
                          f"({', '.join(choice)}) is the closest to the {primary.category}?",
                          letters[choice.index(answer)], answer,
                          tuple(f"{letters[i]}. {c}" for i, c in enumerate(choice)), (primary.id,)))
            break
        if len(out) >= k:
            break
    return out


_DIRECTION_TEXT = {
    "easy": "is the {q} to the left or the right of the {f}?",
    "medium": "is the {q} to my left, right, or back? An object is to my back if I would have to turn at least "
              "135 degrees in order to face it.",
    "hard": "is the {q} to my front-left, front-right, back-left, or back-right? The directions refer to the "
            "quadrants of a Cartesian plane (if I am standing at the origin and facing along the positive y-axis).",
}


def _rel_direction(level: str) -> Callable[[Scene, np.random.Generator, int], list[QA]]:
    def generate(scene: Scene, rng: np.random.Generator, k: int, margin: float = 15.0,
                 min_sep: float = 0.5, max_sep: float = 8.0) -> list[QA]:
        objs = _unique(scene)
        triples = list(itertools.permutations(objs, 3))
        out = []
        for i in rng.permutation(len(triples)):
            s, f, q = triples[i]
            seps = [np.linalg.norm(np.subtract(a.box.center[:2], b.box.center[:2])) for a, b in ((s, f), (s, q), (f, q))]
            if min(seps) < min_sep or max(seps) > max_sep:
                continue
            angle = egocentric_angle(s.box, f.box, q.box)
            if near_boundary(angle, level, margin):
                continue
            label = direction_label(angle, level)
            options, letter = multiple_choice(rng, label, [x for x in DIRECTION_LEVELS[level][0] if x != label])
            text = (f"If I am standing by the {s.category} and facing the {f.category}, "
                    + _DIRECTION_TEXT[level].format(q=q.category, f=f.category))
            out.append(QA(f"object_rel_direction_{level}", text, letter, label, options, (s.id, f.id, q.id)))
            if len(out) >= k:
                break
        return out

    return generate


def route_planning(scene: Scene, rng: np.random.Generator, k: int, tries: int = 400) -> list[QA]:
    """Start at a unique object facing another, go forward to each waypoint in turn; turns are computed from the
    heading change at every waypoint (|change| >= 135 deg: back). Turns within 30 deg of straight or of the
    back boundary are ambiguous and the route is resampled. Straight legs, no obstacle check."""
    by_room: dict[int, list[SceneObject]] = {}
    for o in _unique(scene):
        by_room.setdefault(o.room, []).append(o)
    rooms = [objs for objs in by_room.values() if len(objs) >= 4]
    out, seen = [], set()
    for _ in range(tries):
        if not rooms or len(out) >= k:
            break
        objs = rooms[int(rng.integers(len(rooms)))]
        n_turns = int(rng.integers(1, min(3, len(objs) - 2) + 1))
        path = [objs[i] for i in rng.choice(len(objs), size=n_turns + 2, replace=False)]
        key = tuple(o.id for o in path)
        if key in seen:
            continue
        pts = [np.array(o.box.center[:2]) for o in path]
        if min(np.linalg.norm(b - a) for a, b in zip(pts, pts[1:])) < 0.8:
            continue
        angles = [signed_angle(pts[i] - pts[i - 1], pts[i + 1] - pts[i]) for i in range(1, len(pts) - 1)]
        if any(abs(a) < 30 or abs(abs(a) - 135) < 15 for a in angles):
            continue
        seen.add(key)
        turns = [turn_label(a).title() for a in angles]  # "Turn Left"
        answer = ", ".join(turns)
        alts = [", ".join(t) for t in itertools.product(("Turn Left", "Turn Right", "Turn Back"), repeat=n_turns)]
        alts.remove(answer)
        distractors = _pick(rng, alts, 3)
        options, letter = multiple_choice(rng, answer, distractors)
        steps, n = [], 1
        for i, o in enumerate(path[1:]):
            steps.append(f"{n}. Go forward until the {o.category}")
            n += 1
            if i < n_turns:
                steps.append(f"{n}. [please fill in]")
                n += 1
        text = (f"You are a robot beginning at the {path[0].category} facing the {path[1].category}. You want to "
                f"navigate to the {path[-1].category}. You will perform the following actions (Note: for each "
                f"[please fill in], choose either 'turn back,' 'turn left,' or 'turn right.'): "
                f"{' '.join(steps)}. You have reached the final destination.")
        out.append(QA("route_planning", text, letter, answer, options, key))
    return out


def obj_appearance_order(scene: Scene, rng: np.random.Generator, k: int, min_gap_s: float = 0.3) -> list[QA]:
    """Four categories whose first appearances (first frame with any instance visible) are >= min_gap_s apart."""
    if not scene.has_visibility():
        return []
    first_frame = scene.first_appearance()
    first_t: dict[str, float] = {}
    for o in scene.objects:
        if o.id in first_frame:
            t = scene.frames[first_frame[o.id]].timestamp
            first_t[o.category] = min(t, first_t.get(o.category, math.inf))
    cats = sorted(first_t)
    if len(cats) < 4:
        return []
    out, seen = [], set()
    for _ in range(50 * k):
        choice = tuple(cats[i] for i in rng.choice(len(cats), size=4, replace=False))
        ts = sorted(first_t[c] for c in choice)
        if frozenset(choice) in seen or min(b - a for a, b in zip(ts, ts[1:])) < min_gap_s:
            continue
        seen.add(frozenset(choice))
        order = sorted(choice, key=first_t.get)
        answer = ", ".join(order)
        alts = [", ".join(p) for p in itertools.permutations(order) if list(p) != order]
        options, letter = multiple_choice(rng, answer, _pick(rng, alts, 3))
        out.append(QA("obj_appearance_order", f"What will be the first-time appearance order of the following "
                      f"categories in the video: {', '.join(choice)}?", letter, answer, options))
        if len(out) >= k:
            break
    return out


GENERATORS: dict[str, Callable[[Scene, np.random.Generator, int], list[QA]]] = {
    "object_rel_direction_easy": _rel_direction("easy"),
    "object_rel_direction_medium": _rel_direction("medium"),
    "object_rel_direction_hard": _rel_direction("hard"),
    "object_rel_distance": object_rel_distance,
    "route_planning": route_planning,
    "obj_appearance_order": obj_appearance_order,
    "object_abs_distance": object_abs_distance,
    "object_counting": object_counting,
    "object_size_estimation": object_size_estimation,
    "room_size_estimation": room_size_estimation,
}


def generate_qa(scene: Scene, seed: int, per_type: int = 3, types: tuple[str, ...] = QUESTION_TYPES) -> list[QA]:
    """Up to per_type questions of every requested type (fewer where the scene cannot support more)."""
    unknown = set(types) - set(GENERATORS)
    if unknown:
        raise ValueError(f"unknown question types {sorted(unknown)}; known: {list(GENERATORS)}")
    out: list[QA] = []
    for t in types:
        rng = np.random.default_rng([seed, QUESTION_TYPES.index(t)])
        out.extend(GENERATORS[t](scene, rng, per_type))
    return out
