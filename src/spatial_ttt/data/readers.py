"""Readers for common 3D scene annotation layouts, all returning a validated Scene.

Layouts recognised by read_scene(path):
- this package's own scene.json ("format": "spatial-ttt-scene/1");
- ScanNet-style folder: <id>.aggregation.json (segGroups with label + segments), <id>_vh_clean_2*.segs.json
  (per-vertex segIndices), <id>_vh_clean_2.ply mesh (vertex x y z); optional <id>.txt with axisAlignment,
  optional pose/<n>.txt (4x4 camera-to-world) and intrinsic/intrinsic_color.txt (4x4 or 3x3) for frames;
- per-object box lists in JSON: {"objects": [{"label"|"category", "center", "size", "yaw"|"rotation"}]}
  (optionally "scene_id", "room": {"polygon", "height"} or {"min", "max"}, "frames"), and the
  ARKitScenes-style {"data": [{"label", "segments": {"obbAligned": {"centroid", "axesLengths",
  "normalizedAxes"}}}]}.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import frustum_visibility
from .scene import (
    Box3D, Frame, Intrinsics, Room, Scene, SceneObject, SceneValidationError, _finite, _need, check_rigid,
    frame_from_dict, scene_from_dict, validate_scene,
)


class UnknownLayoutError(SceneValidationError):
    """The path matches none of the supported annotation layouts."""


# ---------------------------------------------------------------- PLY (vertices only)

_PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
              "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
              "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def read_ply_vertices(path: Path) -> np.ndarray:
    """Vertex positions (N, 3) of an ascii or binary PLY whose first element is 'vertex'."""
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise SceneValidationError(f"{path}: not a PLY file (missing 'ply' magic)")
        fmt, elements = None, []  # elements: [name, count, [(prop, dtype)]]
        while True:
            line = fh.readline()
            if not line:
                raise SceneValidationError(f"{path}: PLY header has no end_header")
            words = line.decode("ascii", "replace").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append([words[1], int(words[2]), []])
            elif words[0] == "property":
                if not elements:
                    raise SceneValidationError(f"{path}: PLY property before any element")
                if words[1] == "list":
                    elements[-1][2].append((words[-1], None))
                elif words[1] in _PLY_TYPES:
                    elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
                else:
                    raise SceneValidationError(f"{path}: unknown PLY property type {words[1]!r}")
            elif words[0] == "end_header":
                break
        if not elements or elements[0][0] != "vertex":
            raise SceneValidationError(f"{path}: PLY's first element must be 'vertex'")
        _, count, props = elements[0]
        names = [p for p, _ in props]
        if any(t is None for _, t in props) or not {"x", "y", "z"} <= set(names):
            raise SceneValidationError(f"{path}: PLY vertex element needs scalar x, y, z properties")
        if fmt == "ascii":
            rows = [fh.readline().split() for _ in range(count)]
            try:
                data = np.array(rows, dtype=float)
            except ValueError:
                raise SceneValidationError(f"{path}: PLY vertex data is truncated or malformed") from None
            if data.shape != (count, len(props)):
                raise SceneValidationError(f"{path}: PLY vertex data is truncated or malformed")
            return data[:, [names.index(c) for c in "xyz"]]
        if fmt not in ("binary_little_endian", "binary_big_endian"):
            raise SceneValidationError(f"{path}: unsupported PLY format {fmt!r}")
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(p, order + t) for p, t in props])
        buf = fh.read(dtype.itemsize * count)
        if len(buf) < dtype.itemsize * count:
            raise SceneValidationError(f"{path}: PLY vertex data is truncated")
        v = np.frombuffer(buf, dtype=dtype, count=count)
        return np.c_[v["x"], v["y"], v["z"]].astype(float)


# ---------------------------------------------------------------- ScanNet-style folders


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SceneValidationError(f"{path}: not valid JSON ({e})") from None


def _one(folder: Path, pattern: str, what: str) -> Path:
    hits = sorted(folder.glob(pattern))
    if not hits:
        raise SceneValidationError(f"{folder}: ScanNet layout is missing the {what} ({pattern})")
    return hits[0]


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=float)
    except ValueError as e:
        raise SceneValidationError(f"{path}: not a numeric matrix ({e})") from None
    if m.size != shape[0] * shape[1]:
        raise SceneValidationError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got {m.size} numbers")
    return m.reshape(shape)


def _axis_alignment(folder: Path, scene_id: str) -> np.ndarray:
    meta = folder / f"{scene_id}.txt"
    if meta.exists():
        m = re.search(r"axisAlignment\s*=\s*([-0-9eE.+\s]+)", meta.read_text())
        if m:
            vals = m.group(1).split()
            if len(vals) != 16:
                raise SceneValidationError(f"{meta}: axisAlignment needs 16 numbers, got {len(vals)}")
            align = np.array(vals, dtype=float).reshape(4, 4)
            check_rigid(align, "axisAlignment", str(meta))
            return align
    return np.eye(4)


def _scannet_frames(folder: Path, align: np.ndarray, fps: float) -> list[Frame]:
    pose_dir = folder / "pose"
    if not pose_dir.is_dir():
        return []
    intr_path = _one(folder, "intrinsic/intrinsic_color.txt", "colour intrinsics for pose/")
    k = np.loadtxt(intr_path, dtype=float)
    k = k[:3, :3] if k.shape == (4, 4) else k
    if k.shape != (3, 3):
        raise SceneValidationError(f"{intr_path}: expected a 3x3 or 4x4 intrinsic matrix")
    size_file = folder / "intrinsic" / "image_size.txt"  # "width height"; ScanNet colour default otherwise
    w, h = (np.loadtxt(size_file, dtype=int).tolist() if size_file.exists() else (1296, 968))
    intr = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], int(w), int(h))
    frames = []
    for p in sorted(pose_dir.glob("*.txt"), key=lambda q: int(q.stem) if q.stem.isdigit() else q.stem):
        pose = _read_matrix(p, (4, 4))
        if not np.all(np.isfinite(pose)):  # ScanNet marks lost tracking with -inf poses: skip those frames
            continue
        check_rigid(pose, "camera pose", str(p))
        idx = int(p.stem) if p.stem.isdigit() else len(frames)
        frames.append(Frame(len(frames), idx / fps, align @ pose, intr))
    return frames


def read_scannet(folder: str | Path, fps: float = 30.0, room_height: float | None = None) -> Scene:
    """ScanNet-style folder -> Scene with axis-aligned object boxes (yaw 0) and the mesh bounds as the room."""
    folder = Path(folder)
    agg_path = _one(folder, "*.aggregation.json", "aggregation file")
    scene_id = agg_path.name[: -len(".aggregation.json")]
    segs_path = _one(folder, "*.segs.json", "segments file")
    ply_path = _one(folder, "*_vh_clean_2.ply", "mesh") if list(folder.glob("*_vh_clean_2.ply")) \
        else _one(folder, "*.ply", "mesh")
    align = _axis_alignment(folder, scene_id)
    verts = read_ply_vertices(ply_path)
    verts = verts @ align[:3, :3].T + align[:3, 3]
    seg_idx = np.asarray(_need(_load_json(segs_path), "segIndices", "segments file", str(segs_path)))
    if len(seg_idx) != len(verts):
        raise SceneValidationError(
            f"{segs_path}: segIndices has {len(seg_idx)} entries but the mesh {ply_path.name} has {len(verts)} vertices")
    objects = []
    for i, g in enumerate(_need(_load_json(agg_path), "segGroups", "aggregation file", str(agg_path))):
        where = f"segGroups[{i}]"
        label = str(_need(g, "label", where, str(agg_path)))
        mask = np.isin(seg_idx, _need(g, "segments", where, str(agg_path)))
        if not mask.any():
            raise SceneValidationError(f"{agg_path}: {where} ({label!r}) has no mesh vertices")
        pts = verts[mask]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        size = np.maximum(hi - lo, 1e-3)  # a planar segment still gets a thin, valid box
        objects.append(SceneObject(int(g.get("objectId", g.get("id", i))), label,
                                   Box3D(tuple(((lo + hi) / 2).tolist()), tuple(size.tolist()), 0.0)))
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    room = Room(((lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])),
                float(room_height if room_height is not None else hi[2] - min(lo[2], 0.0)), scene_id)
    scene = Scene(scene_id, [room], objects, _scannet_frames(folder, align, fps), fps, str(folder))
    return frustum_visibility(validate_scene(scene)) if scene.frames else validate_scene(scene)


# ---------------------------------------------------------------- per-object box lists in JSON


def _yaw_from_rotation(rot: Any, where: str, source: str) -> float:
    """Yaw of a gravity-aligned 3x3 rotation (row-major list of 9 or nested); tilted boxes are rejected."""
    r = _finite(rot, f"{where} rotation", source).reshape(-1)
    if r.size != 9:
        raise SceneValidationError(f"{source}: {where} rotation must have 9 numbers, got {r.size}")
    r = r.reshape(3, 3)
    if abs(abs(r[2, 2]) - 1) > 0.02:
        raise SceneValidationError(f"{source}: {where} box is tilted (rotation[2][2] = {r[2, 2]:.3f}); "
                                   "only boxes rotated about the vertical axis are supported")
    return math.atan2(r[1, 0], r[0, 0])


def _room_from(d: Any, objects: list[SceneObject], source: str) -> Room:
    if d is None:  # no room annotated: the floor rectangle around all objects (documented fallback)
        corners = np.vstack([o.box.footprint() for o in objects])
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        height = max(o.box.z_max for o in objects)
        return Room(((lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])), float(height))
    if "polygon" in d:
        poly = _finite(d["polygon"], "room polygon", source)
        return Room(tuple(map(tuple, poly.tolist())), float(_need(d, "height", "room", source)))
    lo = _finite(_need(d, "min", "room", source), "room min", source, 3)
    hi = _finite(_need(d, "max", "room", source), "room max", source, 3)
    return Room(((lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])), float(hi[2] - lo[2]))


def read_box_json(path: str | Path) -> Scene:
    """Per-object box list JSON (generic or ARKitScenes-style) -> Scene."""
    path = Path(path)
    src = str(path)
    d = _load_json(path)
    objects = []
    if isinstance(d, dict) and "data" in d and "objects" not in d:  # ARKitScenes-style
        for i, item in enumerate(d["data"]):
            where = f"data[{i}]"
            obb = _need(_need(item, "segments", where, src), "obbAligned", f"{where}.segments", src)
            center = _finite(_need(obb, "centroid", where, src), f"{where} centroid", src, 3)
            size = _finite(_need(obb, "axesLengths", where, src), f"{where} axesLengths", src, 3)
            yaw = _yaw_from_rotation(_need(obb, "normalizedAxes", where, src), where, src)
            objects.append(SceneObject(i, str(_need(item, "label", where, src)),
                                       Box3D(tuple(center.tolist()), tuple(size.tolist()), yaw)))
    else:
        for i, item in enumerate(_need(d, "objects", "file", src)):
            where = f"objects[{i}]"
            label = item.get("category", item.get("label")) if isinstance(item, dict) else None
            if label is None:
                raise SceneValidationError(f"{src}: {where} is missing required field 'category' (or 'label')")
            center = _finite(_need(item, "center", where, src), f"{where} center", src, 3)
            size_key = "size" if "size" in item else "extent"
            size = _finite(_need(item, size_key, where, src), f"{where} {size_key}", src, 3)
            if "rotation" in item:
                yaw = _yaw_from_rotation(item["rotation"], where, src)
            else:
                yaw = float(item.get("yaw", item.get("heading", 0.0)))
            objects.append(SceneObject(int(item.get("id", i)), str(label),
                                       Box3D(tuple(center.tolist()), tuple(size.tolist()), yaw)))
    if not objects:
        raise SceneValidationError(f"{src}: the box list is empty")
    if any(min(o.box.size) <= 0 for o in objects):  # validate before the room fallback uses the boxes
        bad = next(o for o in objects if min(o.box.size) <= 0)
        raise SceneValidationError(f"{src}: object {bad.id} ({bad.category!r}) has a non-positive box size "
                                   f"{list(bad.box.size)}")
    room = _room_from(d.get("room"), objects, src)
    frames = [frame_from_dict(f, i, src) for i, f in enumerate(d.get("frames", []))]
    fps = float(d.get("fps", 30.0))
    scene = Scene(str(d.get("scene_id", path.stem)), [room], objects, frames, fps, src)
    return frustum_visibility(validate_scene(scene)) if frames else validate_scene(scene)


# ---------------------------------------------------------------- dispatch


def read_scene(path: str | Path) -> Scene:
    """Detect the layout of path (folder or JSON file) and read it; raise UnknownLayoutError otherwise."""
    path = Path(path)
    if not path.exists():
        raise SceneValidationError(f"{path}: no such file or folder")
    if path.is_dir():
        if list(path.glob("*.aggregation.json")):
            return read_scannet(path)
        if (path / "scene.json").exists():
            return read_scene(path / "scene.json")
        raise UnknownLayoutError(f"{path}: folder has neither a ScanNet *.aggregation.json nor a scene.json")
    if path.suffix.lower() != ".json":
        raise UnknownLayoutError(f"{path}: unknown annotation layout (expected a folder or a .json file)")
    d = _load_json(path)
    if isinstance(d, dict) and str(d.get("format", "")).startswith("spatial-ttt-scene"):
        return scene_from_dict(d, str(path))
    if isinstance(d, dict) and ("objects" in d or "data" in d):
        return read_box_json(path)
    raise UnknownLayoutError(f"{path}: unknown JSON layout (expected 'format', 'objects' or 'data' keys)")
