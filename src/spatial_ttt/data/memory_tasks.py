"""Memory task suite: rendered two-room walks whose questions need the whole stream, not the last window.

Each scene (two rooms, a spin in each, a walk through the doorway) is rendered once at the longest length and
subsampled for the shorter ones, so every length shows the same walk: ``16x`` is every frame, ``4x`` every 4th,
``1x`` every 16th. With 64x96 frames a frame pair is 6 video tokens plus ~9 tokens of timestamp and vision
markers, so the three lengths are about 1, 4 and 16 times a 128-token attention window.

Four questions per stream, answered in one word, scored by exact match (answers follow from the rendered
pixels: an object counts as seen in a frame where at least ``MIN_PIXELS`` of its pixels show):

- ``first``: which object did you see first (the largest object in the first frame that shows one; room 1,
  seen only at the start of the walk);
- ``order``: which of two objects, each occurring once, appeared first;
- ``count``: how many objects of a kind were seen over the whole walk (each is in view only for a while);
- ``room_size``: whether the first room is small, medium or large (floor area, seen only early).

Curriculum (``near``): a share of the *training* records can be drawn as near records instead, so that the
questions are first learnt with their evidence inside one attention window (as ``--near`` in
benchmarks/evidence/recall.py) and then transfer to the far ones. A near record shows the stream's first
``NEAR_FRAMES`` frames (the start of the walk, in room 1), its four questions are computed from that clip, and the
clip is shown again before each question, so every frame a question needs lies within 128 tokens of its answer. With
``near=0`` the records are exactly the plain ones; held-out records are never near.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..files import atomic_write_text
from .render import NO_OBJECT, BoxRenderer, category_color
from .synth import CATEGORIES, SynthScene, sample_scene

TASKS = ("first", "order", "count", "room_size")
STRIDES = {"16x": 1, "4x": 4, "1x": 16}  # frames kept from the full walk: every 1st, 4th, 16th
FULL_FRAMES = 256
FRAME_SIZE = (64, 96)  # (H, W): 2x3 merged patches, 6 video tokens per frame pair
FPS = 1.0  # one frame a second: the same timestamps whether a stream is read from the video or a frame folder
MIN_PIXELS = 20
ROOM_SIZE_EDGES = (22.0, 27.5)  # m^2: small below the first, large from the second (about a third each)
PALETTE = {name: cat.color for name, cat in CATEGORIES.items()}
PLURAL = {"bookshelf": "bookshelves", "tv": "tvs"}
# Scene seeds: training scenes count up from 0, held-out scenes from here (never used for training).
HELD_OUT_SEED = 1_000_000
# Frames of a near clip: 12 frames, then one question, span under 128 tokens (the evidence models' window; measured
# in tests/data/test_memory_tasks.py), so each question's answer sees the whole clip within one window.
NEAR_FRAMES = 12


@dataclass(frozen=True)
class MemoryQA:
    task: str
    question: str
    answer: str


@dataclass
class RenderedWalk:
    """A rendered scene: rgb frames [T, H, W, 3] and per-frame pixel counts of every object [T, num_objects]."""

    synth: SynthScene
    rgb: np.ndarray
    pixels: np.ndarray


def render_walk(seed: int, num_frames: int = FULL_FRAMES, size: tuple[int, int] = FRAME_SIZE) -> RenderedWalk:
    """Sample the two-room scene of ``seed`` and render every frame of its walk (CPU, Mesa llvmpipe)."""
    h, w = size
    synth = sample_scene(seed, f"memory-{seed}", num_frames=num_frames, num_rooms=2, width=w, height=h, fps=FPS,
                         objects_per_room=(4, 7))
    objects = synth.scene.objects
    rgb = np.empty((num_frames, h, w, 3), dtype=np.uint8)
    pixels = np.zeros((num_frames, len(objects)), dtype=np.int64)
    with BoxRenderer(w, h) as renderer:
        renderer.set_boxes([(b, c, NO_OBJECT) for b, c in synth.shell]
                           + [(o.box, category_color(o.category, o.id, PALETTE), o.id) for o in objects])
        for i, frame in enumerate(synth.scene.frames):
            rgb[i], ids = renderer.render(frame)
            pixels[i] = np.bincount(ids[ids >= 0].ravel(), minlength=len(objects))[: len(objects)]
    return RenderedWalk(synth, rgb, pixels)


def _plural(category: str) -> str:
    return PLURAL.get(category, category + "s")


def stream_frames(length: str, near: bool = False) -> slice:
    """The frames of the full walk that a stream shows: every ``STRIDES[length]``-th; for a near clip only the first
    NEAR_FRAMES of those. The one rule for questions, videos and run_device.py's frame folders."""
    stride = STRIDES[length]
    return slice(0, NEAR_FRAMES * stride if near else None, stride)


def questions(walk: RenderedWalk, frames: slice, rng: np.random.Generator) -> list[MemoryQA] | None:
    """The four questions for the stream of the walk's ``frames``, in TASKS order; None when this stream cannot
    pose them all unambiguously (no object seen, no pair of single objects far enough apart)."""
    objects = walk.synth.scene.objects
    pixels = walk.pixels[frames]
    seen = pixels >= MIN_PIXELS  # [T, N]
    num_frames = seen.shape[0]
    shown = np.flatnonzero(seen.any(axis=1))
    if len(shown) == 0:
        return None
    start = shown[0]
    first_obj = objects[int(np.argmax(np.where(seen[start], pixels[start], -1)))]
    first = MemoryQA("first", "Which object did you see first?", first_obj.category)

    visible = [o for o in objects if seen[:, o.id].any()]
    counts: dict[str, int] = {}
    for o in visible:
        counts[o.category] = counts.get(o.category, 0) + 1
    first_frame = {o.id: int(np.flatnonzero(seen[:, o.id])[0]) for o in visible}
    singles = [o for o in visible if counts[o.category] == 1]
    gap = max(1, num_frames // 8)
    pairs = [(a, b) for i, a in enumerate(singles) for b in singles[i + 1 :] if abs(first_frame[a.id] - first_frame[b.id]) >= gap]
    if not pairs:
        return None
    a, b = pairs[int(rng.integers(len(pairs)))]
    if rng.random() < 0.5:
        a, b = b, a
    earlier = a if first_frame[a.id] < first_frame[b.id] else b
    order = MemoryQA("order", f"Which appeared first, the {a.category} or the {b.category}?", earlier.category)

    # half the time ask about a category seen more than once, so that the answer is not nearly always 1
    several = sorted(c for c, n in counts.items() if n > 1)
    pool = several if several and rng.random() < 0.5 else sorted(counts)
    kind = pool[int(rng.integers(len(pool)))]
    count = MemoryQA("count", f"How many {_plural(kind)} did you see?", str(counts[kind]))

    (x0, y0), (x1, y1) = walk.synth.scene.rooms[0].bounds()
    area = float((x1 - x0) * (y1 - y0))
    size = "small" if area < ROOM_SIZE_EDGES[0] else "medium" if area < ROOM_SIZE_EDGES[1] else "large"
    room = MemoryQA("room_size", "Is the first room small, medium or large?", size)
    return [first, order, count, room]


def walk_questions(walk: RenderedWalk, seed: int) -> dict[str, list[MemoryQA]] | None:
    """Questions of every length (drawn in STRIDES order from the scene's own random stream, so a subset of
    lengths gets the same questions), or None when some length cannot pose them all."""
    rng = np.random.default_rng([seed, 7])
    per_length = {length: questions(walk, stream_frames(length), rng) for length in STRIDES}
    return None if any(q is None for q in per_length.values()) else per_length


def is_near(seed: int, length: str, near: float) -> bool:
    """Whether the training record of scene ``seed`` at ``length`` is drawn as a near record: a share ``near`` of
    them, each drawn from its own random stream (so the plain records' questions do not move); never held-out."""
    return seed < HELD_OUT_SEED and bool(np.random.default_rng([seed, 11, STRIDES[length]]).random() < near)


def near_questions(walk: RenderedWalk, seed: int, length: str) -> list[MemoryQA] | None:
    """The four questions of the near clip of ``length`` (None when the clip cannot pose them all)."""
    return questions(walk, stream_frames(length, near=True), np.random.default_rng([seed, 13, STRIDES[length]]))


def encode_video(frames: np.ndarray, path: Path, fps: float = FPS, crf: int = 32) -> None:
    """H.264 (yuv420p) at a high CRF: the flat-shaded frames stay clean and a 256-frame walk takes ~45 KB.
    Atomic: written to a temporary file, then renamed."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt, stream.height, stream.width = "yuv420p", frames.shape[1], frames.shape[2]
            stream.options = {"crf": str(crf), "preset": "fast"}
            for rgb in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
            container.mux(stream.encode())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record(video: str, qas: list[MemoryQA], scene_id: str, length: str) -> dict:
    """An SFT conversation record (the trainer's format): the video, then the questions one after another."""
    turns = []
    for i, qa in enumerate(qas):
        turns.append({"from": "human", "value": ("<video>\n" if i == 0 else "") + qa.question})
        turns.append({"from": "gpt", "value": qa.answer})
    return {"id": f"{scene_id}-{length}", "video": video, "length": length, "tasks": [qa.task for qa in qas],
            "conversations": turns}


def near_record(video: str, qas: list[MemoryQA], scene_id: str, length: str) -> dict:
    """A near record: the clip shown again before every question (each answer sees it within one window)."""
    turns = []
    for qa in qas:
        turns.append({"from": "human", "value": "<video>\n" + qa.question})
        turns.append({"from": "gpt", "value": qa.answer})
    return {"id": f"{scene_id}-{length}-near", "video": [video] * len(qas), "length": length, "near": True,
            "tasks": [qa.task for qa in qas], "conversations": turns}


def video_name(seed: int, length: str, near: bool = False) -> str:
    """A record's video under the suite's folder (render_suite.py writes only the 16x ones)."""
    return f"videos/{seed:07d}_{length}{'_near' if near else ''}.mp4"


def walk_records(walk: RenderedWalk, seed: int, lengths: tuple[str, ...] = tuple(STRIDES),
                 near: float = 0.0) -> list[dict] | None:
    """The walk's records, one per length (None when some length cannot pose every question). A share ``near``
    of training records is drawn as near records (is_near); one whose clip cannot pose every question stays plain."""
    if not 0.0 <= near <= 1.0:
        raise ValueError(f"near is a share of the training records, between 0 and 1; got {near}")
    per_length = walk_questions(walk, seed)
    if per_length is None:
        return None
    records = []
    for length in lengths:
        clip = near_questions(walk, seed, length) if is_near(seed, length, near) else None
        if clip is None:
            records.append(record(video_name(seed, length), per_length[length], f"{seed:07d}", length))
        else:
            records.append(near_record(video_name(seed, length, near=True), clip, f"{seed:07d}", length))
    return records


def scene_records(seed: int, out: Path, lengths: tuple[str, ...] = tuple(STRIDES),
                  near: float = 0.0) -> list[dict] | None:
    """Render the scene of ``seed``, write each record's video under ``out/videos`` and return its records
    (None when some length cannot pose every question; the caller moves on to the next seed)."""
    walk = render_walk(seed)
    records = walk_records(walk, seed, lengths, near)
    for rec in records or []:
        clip = rec.get("near", False)
        encode_video(walk.rgb[stream_frames(rec["length"], clip)], out / video_name(seed, rec["length"], clip))
    return records


def iter_scene_records(first_seed: int, num_scenes: int, out: Path, lengths: tuple[str, ...] = tuple(STRIDES),
                       near: float = 0.0) -> Iterator[list[dict]]:
    """Records of ``num_scenes`` usable scenes, trying seeds upwards from ``first_seed``."""
    seed, made = first_seed, 0
    while made < num_scenes:
        recs = scene_records(seed, out, lengths, near)
        seed += 1
        if recs is not None:
            made += 1
            yield recs


def build_split(out: str | Path, split: str, num_scenes: int, first_seed: int, near: float = 0.0) -> Path:
    """Write ``out/<split>.jsonl`` (one record per scene and length) and its videos; returns the JSONL path."""
    out = Path(out)
    rows = [r for recs in iter_scene_records(first_seed, num_scenes, out, near=near) for r in recs]
    path = out / f"{split}.jsonl"
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))
    return path


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Render the memory task suite (train and held-out splits).")
    parser.add_argument("out", help="output folder (train.jsonl, eval.jsonl, videos/)")
    parser.add_argument("--train", type=int, default=160, help="training scenes (seeds from 0)")
    parser.add_argument("--eval", type=int, default=40, help=f"held-out scenes (seeds from {HELD_OUT_SEED})")
    parser.add_argument("--near", type=float, default=0.0, help="share of training records drawn as near clips")
    args = parser.parse_args(argv)
    for split, n, seed in (("eval", args.eval, HELD_OUT_SEED), ("train", args.train, 0)):
        if n > 0:
            print(build_split(args.out, split, n, seed, args.near))


if __name__ == "__main__":
    main()
