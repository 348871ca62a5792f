"""Dense scene descriptions: global context (room size and layout), every category with its count, and
pairwise and landmark relations (left/right/front/behind from the video's first viewpoint, near/far, on/under,
closest-point distances in metres), introducing objects in the order they first appear in the video.
Wording is drawn from several phrasings with a seeded generator, so a seed fixes the text.
"""

from __future__ import annotations

import numpy as np

from .geometry import box_distance, camera_floor_view, stacked_on, viewpoint_coords
from .scene import Room, Scene, SceneObject, SceneValidationError

DESCRIPTION_PROMPTS = (
    "Describe this scene in detail: the room, every object and how the objects are arranged.",
    "Give a dense description of the space in this video, including object counts and spatial relations.",
    "What does this space look like? Describe its size, its layout, all objects and where they are.",
    "Watch the video and write a detailed description of the scene's 3D layout and contents.",
)
NEAR_M, FAR_M = 1.0, 3.0

_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
_IRREGULAR = {"shelf": "shelves", "bookshelf": "bookshelves", "person": "people", "mouse": "mice",
              "couch": "couches", "box": "boxes", "glass": "glasses"}


def plural(word: str, n: int) -> str:
    if n == 1:
        return word
    head, _, last = word.rpartition(" ")
    if last in _IRREGULAR:
        p = _IRREGULAR[last]
    elif last.endswith(("s", "sh", "ch", "x", "z")):
        p = last + "es"
    elif last.endswith("y") and last[-2:-1] not in "aeiou":
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return f"{head} {p}" if head else p


def count_phrase(word: str, n: int) -> str:
    if n == 1:
        return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"
    return f"{n} {plural(word, n)}"


def join_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def instance_names(scene: Scene, ordered: list[SceneObject]) -> dict[int, str]:
    """'the bed', or 'the first chair' / 'the second chair' by order of appearance when a category repeats."""
    totals = {c: len(v) for c, v in scene.categories().items()}
    seen: dict[str, int] = {}
    names = {}
    for o in ordered:
        k = seen.get(o.category, 0)
        seen[o.category] = k + 1
        if totals[o.category] == 1:
            names[o.id] = f"the {o.category}"
        else:
            names[o.id] = f"the {_ORDINALS[k]} {o.category}" if k < len(_ORDINALS) else f"{o.category} #{k + 1}"
    return names


def viewpoint(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Where 'left', 'right', 'in front' and 'behind' are judged from: the first camera, looking ahead."""
    if scene.frames:
        return camera_floor_view(scene.frames[0])
    lo, hi = scene.rooms[0].bounds()
    return np.array([(lo[0] + hi[0]) / 2, lo[1]]), np.array([0.0, 1.0])


def direction_phrase(target: SceneObject, ref: SceneObject, view: tuple[np.ndarray, np.ndarray]) -> str:
    """Dominant floor-plane direction of target relative to ref as seen from view."""
    tr, tf = viewpoint_coords(np.array(target.box.center[:2]), *view)
    rr, rf = viewpoint_coords(np.array(ref.box.center[:2]), *view)
    dr, df = tr - rr, tf - rf
    if abs(dr) >= abs(df):
        return "to the right of" if dr > 0 else "to the left of"
    return "behind" if df > 0 else "in front of"


def region_phrase(obj: SceneObject, room: Room, view: tuple[np.ndarray, np.ndarray]) -> str:
    """Coarse place in the room (thirds across and in depth, from view): 'in the far-left corner', 'in the middle'."""
    corners = np.array(room.polygon)
    coords = np.array([viewpoint_coords(c, *view) for c in corners])
    r, f = viewpoint_coords(np.array(obj.box.center[:2]), *view)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    col = min(2, int(3 * (r - lo[0]) / max(hi[0] - lo[0], 1e-9)))
    row = min(2, int(3 * (f - lo[1]) / max(hi[1] - lo[1], 1e-9)))
    side = ("left", "", "right")[col]
    depth = ("near", "", "far")[row]
    if side and depth:
        return f"in the {depth}-{side} corner"
    if side or depth:
        return f"along the {side or depth} side"
    return "in the middle"


def _room_sentence(rng: np.random.Generator, room: Room, label: str) -> str:
    lo, hi = room.bounds()
    w, d = sorted(hi - lo)[::-1]
    area = room.area()
    templates = (
        "{L} is about {w:.1f} m by {d:.1f} m, roughly {a:.1f} square meters, with a ceiling about {h:.1f} m high.",
        "{L} measures roughly {w:.1f} by {d:.1f} meters ({a:.1f} m²) and is about {h:.1f} m tall.",
        "{L} covers about {a:.1f} square meters ({w:.1f} m x {d:.1f} m); its ceiling is {h:.1f} m high.",
    )
    return templates[int(rng.integers(len(templates)))].format(L=label, w=w, d=d, a=area, h=room.height)


def describe_scene(scene: Scene, seed: int) -> str:
    """A dense, deterministic (given seed) description of the scene in plain sentences."""
    if not scene.objects:
        raise SceneValidationError(f"{scene.source}: scene {scene.scene_id!r} has no objects to describe")
    rng = np.random.default_rng([seed, 7])
    view = viewpoint(scene)
    ordered = scene.objects_in_appearance_order()
    names = instance_names(scene, ordered)
    first = scene.first_appearance()
    sentences = []

    if len(scene.rooms) == 1:
        sentences.append(_room_sentence(rng, scene.rooms[0], "The room"))
    else:
        sentences.append(f"The video walks through {len(scene.rooms)} connected rooms covering about "
                         f"{scene.total_area():.1f} square meters in total.")
        for i, room in enumerate(scene.rooms):
            sentences.append(_room_sentence(rng, room, f"Room {i + 1}"))

    cats: dict[str, int] = {}
    for o in ordered:
        cats[o.category] = cats.get(o.category, 0) + 1
    inventory = join_list([count_phrase(c, n) for c, n in cats.items()])
    lead = ("It contains {}.", "In total there are {}.", "The objects in the scene are {}.")
    sentences.append(lead[int(rng.integers(3))].format(inventory))

    for room_idx, room in enumerate(scene.rooms):
        in_room = [o for o in ordered if o.room == room_idx]
        if not in_room:
            continue
        # landmark: the largest footprint in the room; later objects are also placed relative to it
        landmark = max(in_room, key=lambda o: o.box.size[0] * o.box.size[1])
        introduced: list[SceneObject] = []
        for o in in_room:
            sentences.append(_object_sentence(rng, o, introduced, landmark, room, view, names, scene, first))
            introduced.append(o)
    return " ".join(sentences)


def _object_sentence(rng: np.random.Generator, o: SceneObject, introduced: list[SceneObject],
                     landmark: SceneObject, room: Room, view: tuple[np.ndarray, np.ndarray],
                     names: dict[int, str], scene: Scene, first: dict[int, int]) -> str:
    name = names[o.id]
    dims = "x".join(f"{s:.1f}" for s in sorted(o.box.size, reverse=True))
    seen = f" (first seen at {scene.frames[first[o.id]].timestamp:.1f} s)" if o.id in first else ""
    aside = ", the largest piece of furniture here, " if o.id == landmark.id else ", "
    head = (f"{name.capitalize()}{seen}{aside}about {dims} m, is {region_phrase(o, room, view)}",
            f"Next comes {name}{seen}{aside}roughly {dims} m, {region_phrase(o, room, view)}")[int(rng.integers(2))]
    parts = []
    ref = min(introduced, key=lambda r: box_distance(o.box, r.box)) if introduced else None
    if ref is not None:
        parts.append(_relation(rng, o, ref, view, names))
    if any(r.id == landmark.id for r in introduced) and ref.id != landmark.id:  # landmark relation once known
        parts.append(_relation(rng, o, landmark, view, names))
    return head + ("; " + " and ".join(parts) if parts else "") + "."


def _relation(rng: np.random.Generator, o: SceneObject, ref: SceneObject, view: tuple[np.ndarray, np.ndarray],
              names: dict[int, str]) -> str:
    if stacked_on(o.box, ref.box):
        return f"it sits on {names[ref.id]}"
    if stacked_on(ref.box, o.box):
        return f"it is under {names[ref.id]}"
    d = box_distance(o.box, ref.box)
    closeness = "near" if d < NEAR_M else ("far from" if d > FAR_M else "")
    direction = direction_phrase(o, ref, view)
    forms = (f"it is {d:.1f} m {direction} {names[ref.id]}",
             f"it lies {direction} {names[ref.id]}, {d:.1f} m away")
    text = forms[int(rng.integers(len(forms)))]
    return text + (f", {closeness} it" if closeness else "")
