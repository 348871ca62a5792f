"""Procedural synthetic scenes: rectangular rooms in a row joined by doorways, furniture-like boxes of known
categories placed without overlap, and a camera walk-through (a slow outward-looking spin in every room, then
a walk through the doorway to the next room). Everything is drawn from one numpy Generator, so a seed fixes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .geometry import polygon_distance
from .scene import Box3D, Frame, Intrinsics, Room, Scene, SceneObject, validate_scene


@dataclass(frozen=True)
class Category:
    name: str
    size_min: tuple[float, float, float]  # (width along local x, depth along local y, height), metres
    size_max: tuple[float, float, float]
    placement: str  # "wall" (back against a wall), "free" (anywhere on the floor) or "on" (on a support)
    color: tuple[int, int, int]
    supports: tuple[str, ...] = ()


CATALOG: tuple[Category, ...] = (
    Category("bed", (1.4, 1.9, 0.45), (1.8, 2.1, 0.6), "wall", (200, 60, 60)),
    Category("sofa", (1.6, 0.8, 0.75), (2.3, 1.0, 0.9), "wall", (60, 90, 200)),
    Category("cabinet", (0.8, 0.4, 0.7), (1.5, 0.6, 1.0), "wall", (150, 100, 50)),
    Category("bookshelf", (0.8, 0.3, 1.6), (1.2, 0.4, 2.0), "wall", (110, 70, 30)),
    Category("refrigerator", (0.6, 0.6, 1.7), (0.8, 0.75, 1.9), "wall", (235, 235, 240)),
    Category("desk", (1.0, 0.6, 0.72), (1.6, 0.8, 0.77), "wall", (90, 160, 90)),
    Category("nightstand", (0.4, 0.35, 0.45), (0.55, 0.45, 0.6), "wall", (200, 150, 90)),
    Category("table", (0.8, 0.8, 0.7), (1.6, 1.0, 0.78), "free", (230, 170, 40)),
    Category("chair", (0.45, 0.45, 0.8), (0.55, 0.55, 1.0), "free", (40, 200, 200)),
    Category("stool", (0.35, 0.35, 0.45), (0.45, 0.45, 0.7), "free", (220, 90, 220)),
    Category("trash can", (0.25, 0.25, 0.3), (0.4, 0.4, 0.5), "free", (70, 70, 70)),
    Category("plant", (0.3, 0.3, 0.6), (0.5, 0.5, 1.2), "free", (30, 140, 40)),
    Category("tv", (0.9, 0.08, 0.55), (1.3, 0.1, 0.8), "on", (20, 20, 30), ("cabinet", "desk")),
    Category("lamp", (0.2, 0.2, 0.35), (0.3, 0.3, 0.6), "on", (250, 240, 120), ("table", "desk", "nightstand")),
)
CATEGORIES = {c.name: c for c in CATALOG}

DOOR_WIDTH, DOOR_HEIGHT, WALL_THICKNESS = 1.0, 2.1, 0.1
FLOOR_COLORS = ((170, 160, 150), (150, 165, 175), (175, 165, 140), (160, 150, 170))
WALL_COLOR = (215, 210, 200)


@dataclass
class SynthScene:
    """A sampled scene plus the static shell (floors and walls with doorways) the renderer draws around it."""

    scene: Scene
    shell: list[tuple[Box3D, tuple[int, int, int]]]


def _rect(x0: float, y0: float, x1: float, y1: float) -> tuple[tuple[float, float], ...]:
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _layout_rooms(rng: np.random.Generator, num_rooms: int, ceiling: float) -> tuple[list[Room], list[np.ndarray]]:
    """Rooms side by side along +x from the origin; returns rooms and doorway centres on the shared walls."""
    rooms, doors, x = [], [], 0.0
    for i in range(num_rooms):
        w, d = rng.uniform(3.5, 6.5), rng.uniform(3.5, 6.0)
        rooms.append(Room(_rect(x, 0.0, x + w, d), ceiling, f"room {i + 1}"))
        x += w
    for a, b in zip(rooms, rooms[1:]):
        door_y = min(a.bounds()[1][1], b.bounds()[1][1]) / 2
        doors.append(np.array([a.bounds()[1][0], door_y]))
    return rooms, doors


def _shell(rooms: list[Room], doors: list[np.ndarray]) -> list[tuple[Box3D, tuple[int, int, int]]]:
    """Floor slabs and wall boxes; shared walls get a doorway (two wall pieces and a lintel)."""
    t, out = WALL_THICKNESS, []
    for i, r in enumerate(rooms):
        (x0, y0), (x1, y1) = r.bounds()
        h = r.height
        out.append((Box3D(((x0 + x1) / 2, (y0 + y1) / 2, -0.01), (x1 - x0, y1 - y0, 0.02)), FLOOR_COLORS[i % 4]))
        out.append((Box3D(((x0 + x1) / 2, y0 - t / 2, h / 2), (x1 - x0 + 2 * t, t, h)), WALL_COLOR))
        out.append((Box3D(((x0 + x1) / 2, y1 + t / 2, h / 2), (x1 - x0 + 2 * t, t, h)), WALL_COLOR))
        if i == 0:
            out.append((Box3D((x0 - t / 2, (y0 + y1) / 2, h / 2), (t, y1 - y0, h)), WALL_COLOR))
        if i == len(rooms) - 1:
            out.append((Box3D((x1 + t / 2, (y0 + y1) / 2, h / 2), (t, y1 - y0, h)), WALL_COLOR))
        else:  # wall shared with the next room, as tall as the taller one, with a doorway
            nxt = rooms[i + 1]
            top = max(y1, nxt.bounds()[1][1])
            dy = doors[i][1]
            lo, hi = dy - DOOR_WIDTH / 2, dy + DOOR_WIDTH / 2
            hh = max(h, nxt.height)
            out.append((Box3D((x1, (y0 + lo) / 2, hh / 2), (t, lo - y0, hh)), WALL_COLOR))
            out.append((Box3D((x1, (hi + top) / 2, hh / 2), (t, top - hi, hh)), WALL_COLOR))
            out.append((Box3D((x1, dy, (DOOR_HEIGHT + hh) / 2), (t, DOOR_WIDTH, hh - DOOR_HEIGHT)), WALL_COLOR))
    return out


def _sample_size(rng: np.random.Generator, cat: Category) -> tuple[float, float, float]:
    return tuple(float(round(rng.uniform(a, b), 3)) for a, b in zip(cat.size_min, cat.size_max))


def _place_floor(rng: np.random.Generator, cat: Category, room: Room, taken: list[np.ndarray],
                 keep_clear: list[np.ndarray], tries: int = 60) -> Box3D | None:
    """Rejection-sample a floor box for cat inside room: clear of other boxes (10 cm) and the camera path."""
    (x0, y0), (x1, y1) = room.bounds()
    for _ in range(tries):
        size = _sample_size(rng, cat)
        if cat.placement == "wall":
            side = int(rng.integers(4))
            yaw = (0.0, math.pi / 2, math.pi, -math.pi / 2)[side]  # local +y (front) points into the room
            half_w, half_d = size[0] / 2, size[1] / 2
            if side == 0:  # against y = y0
                cx, cy = rng.uniform(x0 + half_w, x1 - half_w), y0 + half_d
            elif side == 1:  # against x = x1
                cx, cy = x1 - half_d, rng.uniform(y0 + half_w, y1 - half_w)
            elif side == 2:  # against y = y1
                cx, cy = rng.uniform(x0 + half_w, x1 - half_w), y1 - half_d
            else:  # against x = x0
                cx, cy = x0 + half_d, rng.uniform(y0 + half_w, y1 - half_w)
        else:
            yaw = float(rng.uniform(-math.pi, math.pi))
            reach = math.hypot(size[0], size[1]) / 2
            if x1 - x0 < 2 * reach or y1 - y0 < 2 * reach:
                continue
            cx, cy = rng.uniform(x0 + reach, x1 - reach), rng.uniform(y0 + reach, y1 - reach)
        box = Box3D((float(cx), float(cy), size[2] / 2), size, float(yaw))
        fp = box.footprint()
        if any(polygon_distance(fp, t) < 0.1 for t in taken):
            continue
        if any(polygon_distance(fp, seg) < 0.75 for seg in keep_clear):
            continue
        return box
    return None


def _place_on(rng: np.random.Generator, cat: Category, support: Box3D) -> Box3D | None:
    size = _sample_size(rng, cat)
    if size[0] > support.size[0] or size[1] > support.size[1]:
        return None
    # offset inside the support's top face, in the support's local frame
    ox = rng.uniform(-(support.size[0] - size[0]) / 2, (support.size[0] - size[0]) / 2)
    oy = rng.uniform(-(support.size[1] - size[1]) / 2, (support.size[1] - size[1]) / 2)
    c, s = math.cos(support.yaw), math.sin(support.yaw)
    cx, cy = support.center[0] + c * ox - s * oy, support.center[1] + s * ox + c * oy
    return Box3D((float(cx), float(cy), support.z_max + size[2] / 2), size, support.yaw)


def _look_pose(pos: np.ndarray, heading: float, pitch: float) -> np.ndarray:
    """Camera-to-world pose (OpenCV axes) at pos, looking along heading (rad, about +z), tilted down by pitch."""
    fwd = np.array([math.cos(heading) * math.cos(pitch), math.sin(heading) * math.cos(pitch), -math.sin(pitch)])
    right = np.array([math.sin(heading), -math.cos(heading), 0.0])
    down = np.cross(fwd, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, fwd, pos
    return pose


def _camera_walk(rng: np.random.Generator, centers: list[np.ndarray], doors: list[np.ndarray], num_frames: int,
                 intr: Intrinsics, fps: float) -> list[Frame]:
    """Spin (radius 0.3 m, looking outward) in each room, then walk through the doorway to the next room."""
    n_rooms = len(centers)
    weights = [1.0] * n_rooms + [0.35] * (n_rooms - 1)  # spins, then transits
    counts = np.floor(np.array(weights) / sum(weights) * num_frames).astype(int)
    counts[: num_frames - counts.sum()] += 1  # hand out the remainder, spins first
    height, pitch = rng.uniform(1.35, 1.6), math.radians(rng.uniform(18, 28))
    heading = float(rng.uniform(-math.pi, math.pi))
    poses = []
    for r in range(n_rooms):
        n_spin = int(counts[r])
        # end the spin facing the next doorway so the walk continues without a jump
        exit_heading = (math.atan2(*(doors[r] - centers[r])[::-1]) if r < n_rooms - 1 else heading + 2 * math.pi)
        sweep = 2 * math.pi + (exit_heading - heading - 2 * math.pi) % (2 * math.pi)
        for k in range(n_spin):
            h = heading + sweep * k / max(n_spin, 1)
            pos = np.array([*(centers[r] + 0.3 * np.array([math.cos(h), math.sin(h)])), height])
            poses.append(_look_pose(pos, h, pitch))
        heading = heading + sweep
        if r < n_rooms - 1:
            n_walk = int(counts[n_rooms + r])
            path = [centers[r], doors[r], centers[r + 1]]
            legs = [np.linalg.norm(path[1] - path[0]), np.linalg.norm(path[2] - path[1])]
            for k in range(n_walk):
                s = (k + 0.5) / n_walk * sum(legs)
                a, b = (path[0], path[1]) if s <= legs[0] else (path[1], path[2])
                t = s / legs[0] if s <= legs[0] else (s - legs[0]) / legs[1]
                h = math.atan2(*(b - a)[::-1])
                poses.append(_look_pose(np.array([*(a + t * (b - a)), height]), h, pitch * 0.5))
            heading = math.atan2(*(path[2] - path[1])[::-1])
    return [Frame(i, i / fps, p, intr) for i, p in enumerate(poses)]


def default_intrinsics(width: int, height: int, hfov_deg: float = 75.0) -> Intrinsics:
    fx = width / 2 / math.tan(math.radians(hfov_deg) / 2)
    return Intrinsics(fx, fx, (width - 1) / 2, (height - 1) / 2, width, height)


def sample_scene(seed: int | np.random.SeedSequence, scene_id: str, num_frames: int = 32, num_rooms: int = 1,
                 width: int = 320, height: int = 240, fps: float = 10.0,
                 objects_per_room: tuple[int, int] = (6, 12)) -> SynthScene:
    """Sample rooms, furniture and a camera walk. Visibility is left unset: the renderer fills it from pixels."""
    if num_rooms < 1 or num_frames < num_rooms:
        raise ValueError(f"need num_rooms >= 1 and num_frames >= num_rooms, got {num_rooms}, {num_frames}")
    rng = np.random.default_rng(seed)
    rooms, doors = _layout_rooms(rng, num_rooms, float(rng.uniform(2.5, 3.0)))
    centers = [(r.bounds()[0] + r.bounds()[1]) / 2 for r in rooms]
    floor_cats = [c for c in CATALOG if c.placement != "on"]
    on_cats = [c for c in CATALOG if c.placement == "on"]
    objects: list[SceneObject] = []
    for ri, room in enumerate(rooms):
        keep_clear = [centers[ri][None]]  # camera spin area
        if ri > 0:
            keep_clear.append(np.stack([doors[ri - 1], centers[ri]]))
        if ri < num_rooms - 1:
            keep_clear.append(np.stack([centers[ri], doors[ri]]))
        taken: list[np.ndarray] = []
        n_target = int(rng.integers(objects_per_room[0], objects_per_room[1] + 1))
        # repeat a few categories so counting questions have answers above one
        pool = [floor_cats[i] for i in rng.choice(len(floor_cats), size=n_target, replace=True)]
        for cat in pool:
            box = _place_floor(rng, cat, room, taken, keep_clear)
            if box is not None:
                taken.append(box.footprint())
                objects.append(SceneObject(len(objects), cat.name, box, ri))
        for cat in on_cats:  # each "on" category lands on at most one support per room, if any fits
            supports = [o for o in objects if o.room == ri and o.category in cat.supports]
            if supports and rng.random() < 0.8:
                sup = supports[int(rng.integers(len(supports)))]
                if not any(o.room == ri and o.box.z_min >= sup.box.z_max - 1e-6
                           and polygon_distance(o.box.footprint(), sup.box.footprint()) == 0 for o in objects):
                    box = _place_on(rng, cat, sup.box)
                    if box is not None:
                        objects.append(SceneObject(len(objects), cat.name, box, ri))
    intr = default_intrinsics(width, height)
    frames = _camera_walk(rng, centers, doors, num_frames, intr, fps)
    scene = Scene(scene_id, rooms, objects, frames, fps, f"<synthetic {scene_id}>")
    return SynthScene(validate_scene(scene), _shell(rooms, doors))
