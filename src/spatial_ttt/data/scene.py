"""Scene schema: rooms, oriented object boxes, camera frames and per-frame visibility, with validation.

Conventions (used by every module of this package):
- world frame is metric, z points up, the floor of every room is at z = 0 unless its polygon says otherwise;
- a box is (center, size, yaw): size = (extent along the box's local x, local y, z), yaw = rotation about +z (rad);
- a camera pose is camera-to-world, OpenCV camera axes (x right, y down, z forward);
- intrinsics follow OpenCV: pixel centers at integer coordinates, (0, 0) is the centre of the top-left pixel.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_text

SCENE_FORMAT = "spatial-ttt-scene/1"


class SceneValidationError(ValueError):
    """A scene or annotation file is malformed; the message names the source and the problem."""


@dataclass(frozen=True)
class Box3D:
    center: tuple[float, float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0

    @property
    def z_min(self) -> float:
        return self.center[2] - self.size[2] / 2

    @property
    def z_max(self) -> float:
        return self.center[2] + self.size[2] / 2

    def footprint(self) -> np.ndarray:
        """Floor-plane corners (4, 2), counter-clockwise."""
        hx, hy = self.size[0] / 2, self.size[1] / 2
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        rot = np.array([[c, -s], [s, c]])
        return local @ rot.T + np.array(self.center[:2])

    def corners(self) -> np.ndarray:
        """All 8 corners (8, 3): the footprint at z_min, then at z_max."""
        fp = self.footprint()
        low = np.c_[fp, np.full(4, self.z_min)]
        high = np.c_[fp, np.full(4, self.z_max)]
        return np.vstack([low, high])


@dataclass(frozen=True)
class SceneObject:
    id: int
    category: str
    box: Box3D
    room: int = 0  # index into Scene.rooms


@dataclass(frozen=True)
class Room:
    """A room's floor as a simple polygon (x, y) in metres, and its ceiling height."""

    polygon: tuple[tuple[float, float], ...]
    height: float
    name: str = "room"

    def area(self) -> float:
        pts = np.asarray(self.polygon, dtype=float)
        x, y = pts[:, 0], pts[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        pts = np.asarray(self.polygon, dtype=float)
        return pts.min(axis=0), pts.max(axis=0)


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


@dataclass(frozen=True)
class Frame:
    index: int
    timestamp: float  # seconds from the start of the video
    pose: np.ndarray  # 4x4 camera-to-world
    intrinsics: Intrinsics
    visible: tuple[int, ...] | None = None  # object ids seen in this frame; None = not annotated


@dataclass
class Scene:
    scene_id: str
    rooms: list[Room]
    objects: list[SceneObject]
    frames: list[Frame] = field(default_factory=list)
    fps: float = 10.0
    source: str = "<memory>"  # where it was read from, for error messages

    def object(self, obj_id: int) -> SceneObject:
        for o in self.objects:
            if o.id == obj_id:
                return o
        raise KeyError(f"{self.source}: no object with id {obj_id}")

    def categories(self) -> dict[str, list[SceneObject]]:
        out: dict[str, list[SceneObject]] = {}
        for o in self.objects:
            out.setdefault(o.category, []).append(o)
        return out

    def total_area(self) -> float:
        return sum(r.area() for r in self.rooms)

    def has_visibility(self) -> bool:
        return bool(self.frames) and all(f.visible is not None for f in self.frames)

    def first_appearance(self) -> dict[int, int]:
        """Object id -> index (in self.frames) of the first frame where it is visible; unseen objects are absent."""
        first: dict[int, int] = {}
        for i, f in enumerate(self.frames):
            for oid in f.visible or ():
                first.setdefault(oid, i)
        return first

    def seen_only(self) -> "Scene":
        """Copy keeping only objects visible in at least one frame (all objects when visibility is unknown):
        questions must not count or name what the video never shows."""
        if not self.has_visibility():
            return self
        first = self.first_appearance()
        return Scene(self.scene_id, self.rooms, [o for o in self.objects if o.id in first], self.frames,
                     self.fps, self.source)

    def objects_in_appearance_order(self) -> list[SceneObject]:
        """Objects sorted by first appearance; objects never seen (or no visibility) keep their list order, last."""
        first = self.first_appearance()
        big = len(self.frames) + 1
        order = sorted(range(len(self.objects)), key=lambda i: (first.get(self.objects[i].id, big), i))
        return [self.objects[i] for i in order]


# ---------------------------------------------------------------- validation


def _finite(values: Any, what: str, source: str, n: int | None = None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise SceneValidationError(f"{source}: {what} must be numeric, got {values!r}") from None
    if n is not None and arr.shape != (n,):
        raise SceneValidationError(f"{source}: {what} must have {n} numbers, got {values!r}")
    if not np.all(np.isfinite(arr)):
        raise SceneValidationError(f"{source}: {what} contains NaN or infinity: {values!r}")
    return arr


def check_rigid(pose: np.ndarray, what: str, source: str, tol: float = 1e-3) -> None:
    """Raise unless pose is a 4x4 rigid transform (orthonormal rotation with det +1, last row 0 0 0 1)."""
    pose = np.asarray(pose, dtype=float)
    if pose.shape != (4, 4):
        raise SceneValidationError(f"{source}: {what} must be a 4x4 matrix, got shape {pose.shape}")
    if not np.all(np.isfinite(pose)):
        raise SceneValidationError(f"{source}: {what} contains NaN or infinity")
    if not np.allclose(pose[3], [0, 0, 0, 1], atol=tol):
        raise SceneValidationError(f"{source}: {what} last row must be [0 0 0 1], got {pose[3].tolist()}")
    rot = pose[:3, :3]
    err = np.abs(rot.T @ rot - np.eye(3)).max()
    if err > tol or np.linalg.det(rot) < 0:
        raise SceneValidationError(
            f"{source}: {what} is not a rigid transform (rotation not orthonormal with det +1; "
            f"max |R^T R - I| = {err:.3g}, det = {np.linalg.det(rot):.3g})"
        )


def validate_scene(scene: Scene) -> Scene:
    """Check every invariant the generators rely on; return the scene or raise SceneValidationError."""
    src = scene.source
    if not scene.scene_id:
        raise SceneValidationError(f"{src}: scene_id is empty")
    if not scene.rooms:
        raise SceneValidationError(f"{src}: scene has no room")
    for i, room in enumerate(scene.rooms):
        if len(room.polygon) < 3:
            raise SceneValidationError(f"{src}: room {i} polygon needs at least 3 points, got {len(room.polygon)}")
        _finite(room.polygon, f"room {i} polygon", src)
        if room.area() <= 1e-6:
            raise SceneValidationError(f"{src}: room {i} polygon has zero area")
        if not (math.isfinite(room.height) and room.height > 0):
            raise SceneValidationError(f"{src}: room {i} height must be positive, got {room.height}")
    seen: set[int] = set()
    for o in scene.objects:
        what = f"object {o.id} ({o.category!r})"
        if o.id in seen:
            raise SceneValidationError(f"{src}: duplicate object id {o.id}")
        seen.add(o.id)
        if not o.category.strip():
            raise SceneValidationError(f"{src}: object {o.id} has an empty category")
        _finite(o.box.center, f"{what} center", src, 3)
        size = _finite(o.box.size, f"{what} size", src, 3)
        if np.any(size <= 0):
            raise SceneValidationError(f"{src}: {what} has a non-positive box size {list(o.box.size)}")
        if not math.isfinite(o.box.yaw):
            raise SceneValidationError(f"{src}: {what} yaw is not finite")
        if not 0 <= o.room < len(scene.rooms):
            raise SceneValidationError(f"{src}: {what} refers to room {o.room}, scene has {len(scene.rooms)}")
    if not (math.isfinite(scene.fps) and scene.fps > 0):
        raise SceneValidationError(f"{src}: fps must be positive, got {scene.fps}")
    prev_t = -math.inf
    for f in scene.frames:
        check_rigid(f.pose, f"frame {f.index} pose", src)
        k = f.intrinsics
        if min(k.fx, k.fy) <= 0 or k.width <= 0 or k.height <= 0:
            raise SceneValidationError(f"{src}: frame {f.index} intrinsics need positive fx, fy, width, height: {k}")
        if f.timestamp < prev_t:
            raise SceneValidationError(f"{src}: frame {f.index} timestamp {f.timestamp} goes back in time")
        prev_t = f.timestamp
        unknown = set(f.visible or ()) - seen
        if unknown:
            raise SceneValidationError(f"{src}: frame {f.index} lists unknown visible object ids {sorted(unknown)}")
    return scene


# ---------------------------------------------------------------- (de)serialisation


def scene_to_dict(scene: Scene) -> dict[str, Any]:
    return {
        "format": SCENE_FORMAT,
        "scene_id": scene.scene_id,
        "fps": scene.fps,
        "rooms": [{"name": r.name, "polygon": [list(p) for p in r.polygon], "height": r.height} for r in scene.rooms],
        "objects": [
            {"id": o.id, "category": o.category, "center": list(o.box.center), "size": list(o.box.size),
             "yaw": o.box.yaw, "room": o.room}
            for o in scene.objects
        ],
        "frames": [
            {"index": f.index, "timestamp": f.timestamp, "pose": np.asarray(f.pose).tolist(),
             "intrinsics": {"fx": f.intrinsics.fx, "fy": f.intrinsics.fy, "cx": f.intrinsics.cx,
                            "cy": f.intrinsics.cy, "width": f.intrinsics.width, "height": f.intrinsics.height},
             "visible": None if f.visible is None else list(f.visible)}
            for f in scene.frames
        ],
    }


def _need(d: Any, key: str, where: str, source: str) -> Any:
    if not isinstance(d, dict):
        raise SceneValidationError(f"{source}: {where} must be an object, got {type(d).__name__}")
    if key not in d:
        raise SceneValidationError(f"{source}: {where} is missing required field {key!r}")
    return d[key]


def intrinsics_from_dict(d: Any, where: str, source: str) -> Intrinsics:
    vals = {k: _need(d, k, where, source) for k in ("fx", "fy", "cx", "cy", "width", "height")}
    _finite(list(vals.values()), f"{where} values", source)
    return Intrinsics(float(vals["fx"]), float(vals["fy"]), float(vals["cx"]), float(vals["cy"]),
                      int(vals["width"]), int(vals["height"]))


def frame_from_dict(d: Any, i: int, source: str) -> Frame:
    where = f"frames[{i}]"
    pose = _finite(_need(d, "pose", where, source), f"{where} pose", source)
    vis = d.get("visible")
    return Frame(
        index=int(d.get("index", i)),
        timestamp=float(_need(d, "timestamp", where, source)),
        pose=pose,
        intrinsics=intrinsics_from_dict(_need(d, "intrinsics", where, source), f"{where} intrinsics", source),
        visible=None if vis is None else tuple(int(v) for v in vis),
    )


def scene_from_dict(d: Any, source: str) -> Scene:
    """Build and validate a scene from this package's own JSON layout (see scene_to_dict)."""
    rooms = []
    for i, r in enumerate(_need(d, "rooms", "scene", source)):
        poly = _finite(_need(r, "polygon", f"rooms[{i}]", source), f"rooms[{i}] polygon", source)
        if poly.ndim != 2 or poly.shape[1] != 2:
            raise SceneValidationError(f"{source}: rooms[{i}] polygon must be a list of [x, y] points")
        rooms.append(Room(tuple(map(tuple, poly.tolist())), float(_need(r, "height", f"rooms[{i}]", source)),
                          str(r.get("name", "room"))))
    objects = []
    for i, o in enumerate(_need(d, "objects", "scene", source)):
        where = f"objects[{i}]"
        center = _finite(_need(o, "center", where, source), f"{where} center", source, 3)
        size = _finite(_need(o, "size", where, source), f"{where} size", source, 3)
        objects.append(SceneObject(int(_need(o, "id", where, source)), str(_need(o, "category", where, source)),
                                   Box3D(tuple(center.tolist()), tuple(size.tolist()), float(o.get("yaw", 0.0))),
                                   int(o.get("room", 0))))
    frames = [frame_from_dict(f, i, source) for i, f in enumerate(d.get("frames", []))]
    scene = Scene(str(_need(d, "scene_id", "scene", source)), rooms, objects, frames,
                  float(d.get("fps", 10.0)), source)
    return validate_scene(scene)


def save_scene(scene: Scene, path: str | Path) -> None:
    atomic_write_text(path, json.dumps(scene_to_dict(scene), indent=1))


def load_scene(path: str | Path) -> Scene:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SceneValidationError(f"{path}: not valid JSON ({e})") from None
    return scene_from_dict(data, str(path))
