"""Readers for common 3D scene annotation layouts, all returning a validated Scene.

Layouts recognised by read_scene(path):
- this package's own scene.json ("format": "spatial-ttt-scene/1");
- ScanNet scan folder: <id>.aggregation.json (segGroups with label + segments), the segments file of the mesh
  (<id>_vh_clean_2.0.010000.segs.json for <id>_vh_clean_2.ply), <id>.txt with axisAlignment, optional
  pose/<n>.txt (4x4 camera-to-world) and intrinsic/intrinsic_color.txt (4x4 or 3x3) for frames; labels are
  curated through scannetv2-labels.combined.tsv (see labels.py);
- ARKitScenes 3DOD folder: <video_id>_3dod_annotation.json ({"data": [{"label", "segments": {"obbAligned":
  {"centroid", "axesLengths", "normalizedAxes"}}}]}) and <video_id>_3dod_mesh.ply for the room;
- per-object box lists in JSON: {"objects": [{"label"|"category", "center", "size", "yaw"|"rotation"}]}
  (optionally "scene_id", "room": {"polygon", "height"} or {"min", "max"}, "frames").
"""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .geometry import convex_hull, frustum_visibility
from .labels import LabelMap, arkitscenes_labels, find_scannet_label_map, normalize
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


def _skip(fh, fmt: str, order: str, count: int, props: list) -> None:
    """Move past the data of an element stored before 'vertex' (faces, edges, ...)."""
    if fmt == "ascii":
        for _ in range(count):
            fh.readline()
        return
    if all(t is not None for _, t, _ in props):
        fh.seek(count * sum(np.dtype(t).itemsize for _, t, _ in props), 1)
        return
    for _ in range(count):  # records with list properties: each list says how long it is
        for _, t, lst in props:
            if t is not None:
                fh.seek(np.dtype(t).itemsize, 1)
            else:
                count_t, item_t = lst
                n = int(np.frombuffer(fh.read(np.dtype(count_t).itemsize), order + count_t)[0])
                fh.seek(n * np.dtype(item_t).itemsize, 1)


def read_ply_vertices(path: Path) -> np.ndarray:
    """Vertex positions (N, 3) of an ascii or binary PLY (the vertex element may come after others)."""
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise SceneValidationError(f"{path}: not a PLY file (missing 'ply' magic)")
        fmt, elements = None, []  # elements: [name, count, [(prop, dtype or None for lists, list count dtype)]]
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
                if words[1] == "list" and len(words) == 5 and words[2] in _PLY_TYPES and words[3] in _PLY_TYPES:
                    elements[-1][2].append((words[4], None, (_PLY_TYPES[words[2]], _PLY_TYPES[words[3]])))
                elif words[1] in _PLY_TYPES:
                    elements[-1][2].append((words[2], _PLY_TYPES[words[1]], None))
                else:
                    raise SceneValidationError(f"{path}: unknown PLY property type {' '.join(words[1:-1])!r}")
            elif words[0] == "end_header":
                break
        if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
            raise SceneValidationError(f"{path}: unsupported PLY format {fmt!r}")
        names = [e[0] for e in elements]
        if "vertex" not in names:
            raise SceneValidationError(f"{path}: PLY has no 'vertex' element")
        order = "<" if fmt == "binary_little_endian" else ">"
        try:
            for _, count, props in elements[: names.index("vertex")]:
                _skip(fh, fmt, order, count, props)
        except (ValueError, IndexError):
            raise SceneValidationError(f"{path}: PLY data before the vertices is truncated or malformed") from None
        _, count, props = elements[names.index("vertex")]
        cols = [p for p, _, _ in props]
        if any(t is None for _, t, _ in props) or not {"x", "y", "z"} <= set(cols):
            raise SceneValidationError(f"{path}: PLY vertex element needs scalar x, y, z properties")
        if fmt == "ascii":
            rows = [fh.readline().split() for _ in range(count)]
            try:
                data = np.array(rows, dtype=float)
            except ValueError:
                raise SceneValidationError(f"{path}: PLY vertex data is truncated or malformed") from None
            if data.shape != (count, len(props)):
                raise SceneValidationError(f"{path}: PLY vertex data is truncated or malformed")
            return data[:, [cols.index(c) for c in "xyz"]]
        dtype = np.dtype([(p, order + t) for p, t, _ in props])
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


def _only(folder: Path, hits: list[Path], what: str, pattern: str) -> Path:
    if len(hits) != 1:
        found = f"found {', '.join(h.name for h in hits)}" if hits else "found none"
        raise SceneValidationError(f"{folder}: expected one {what} ({pattern}), {found}")
    return hits[0]


def _scannet_files(folder: Path) -> tuple[str, Path, Any, Path, Path]:
    """(scene id, aggregation file and its JSON, mesh, segments of that mesh) of a ScanNet scan folder.

    A full scan folder has two of each: <id>.aggregation.json + <id>_vh_clean_2.0.010000.segs.json belong to the
    decimated mesh <id>_vh_clean_2.ply; <id>_vh_clean.aggregation.json + <id>_vh_clean.segs.json to the full one.
    """
    aggs = [p for p in folder.glob("*.aggregation.json") if not p.name.endswith("_vh_clean.aggregation.json")]
    agg = _only(folder, sorted(aggs), "aggregation file", "<id>.aggregation.json")
    scene_id = agg.name[: -len(".aggregation.json")]
    mesh = folder / f"{scene_id}_vh_clean_2.ply"
    if not mesh.is_file():
        meshes = [p for p in folder.glob("*.ply") if not p.name.endswith(".labels.ply")]
        mesh = _only(folder, sorted(meshes), "mesh", f"{scene_id}_vh_clean_2.ply")
    agg_json = _load_json(agg)
    named = str(agg_json.get("segmentsFile", "") if isinstance(agg_json, dict) else "").removeprefix("scannet.")
    if named and (folder / named).is_file():
        return scene_id, agg, agg_json, mesh, folder / named
    segs = [p for p in folder.glob("*.segs.json") if p.name.startswith(mesh.stem + ".")]
    segs_path = _only(folder, sorted(segs), f"segments file of {mesh.name}", f"{mesh.stem}.*segs.json")
    return scene_id, agg, agg_json, mesh, segs_path


def _read_matrix(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        m = np.loadtxt(path, dtype=float)
    except ValueError as e:
        raise SceneValidationError(f"{path}: not a numeric matrix ({e})") from None
    if m.size != shape[0] * shape[1]:
        raise SceneValidationError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got {m.size} numbers")
    return m.reshape(shape)


def _axis_alignment(folder: Path, scene_id: str, allow_unaligned: bool) -> np.ndarray:
    """The scan's axisAlignment (4x4, in <id>.txt): it turns the scan about z so the walls run along x and y."""
    meta = folder / f"{scene_id}.txt"
    m = re.search(r"^\s*axisAlignment\s*=(.*)$", meta.read_text(), re.M) if meta.is_file() else None
    if m:
        vals = m.group(1).split()
        if len(vals) != 16:
            raise SceneValidationError(f"{meta}: axisAlignment needs 16 numbers, got {len(vals)}")
        align = _finite(vals, "axisAlignment", str(meta)).reshape(4, 4)
        check_rigid(align, "axisAlignment", str(meta))
        return align
    problem = f"{meta} has no axisAlignment" if meta.is_file() else f"{meta} (with the axisAlignment) is missing"
    problem += ": room size and object sizes would be measured in the raw, unaligned scan frame"
    if not allow_unaligned:
        raise SceneValidationError(f"{problem}; pass allow_unaligned=True (CLI: --allow-unaligned) to use it anyway")
    warnings.warn(problem, stacklevel=3)
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


def _floor_room(verts: np.ndarray, height: float, name: str) -> Room:
    """The room as the convex hull of the mesh's floor projection (see docs/data.md, room size)."""
    return Room(tuple(map(tuple, convex_hull(verts[:, :2]).tolist())), float(height), name)


def _as_label_map(label_map: LabelMap | str | Path) -> LabelMap:
    return label_map if isinstance(label_map, LabelMap) else LabelMap.from_file(label_map)


def _warn_unmapped(labels: LabelMap, raw_labels: list[str], source: str) -> None:
    unmapped = sorted({normalize(r) for r in raw_labels if not labels.knows(r)})
    if labels.mapping and unmapped:
        warnings.warn(f"{source}: labels not in the label map {labels.source}, kept as written: "
                      f"{', '.join(unmapped)}", stacklevel=3)


def read_scannet(folder: str | Path, fps: float = 30.0, room_height: float | None = None, *,
                 label_map: LabelMap | str | Path | None = None, allow_unaligned: bool = False) -> Scene:
    """ScanNet scan folder -> Scene with axis-aligned object boxes (yaw 0) and the mesh footprint as the room.

    label_map: a LabelMap, or a file (ScanNet tsv / JSON); default: scannetv2-labels.combined.tsv found in the
    folder or up to two levels above, else the raw labels (with a warning). allow_unaligned: accept a scan whose
    <id>.txt has no axisAlignment (warns) instead of refusing it.
    """
    folder = Path(folder)
    scene_id, agg_path, agg, ply_path, segs_path = _scannet_files(folder)
    if label_map is None:
        found = find_scannet_label_map(folder)
        if found is None:
            warnings.warn(f"{folder}: no scannetv2-labels.combined.tsv here or above; raw labels are used "
                          "(pass label_map= to curate them)", stacklevel=2)
        labels = LabelMap.from_file(found) if found else LabelMap({}, "<none>")
    else:
        labels = _as_label_map(label_map)
    align = _axis_alignment(folder, scene_id, allow_unaligned)
    verts = read_ply_vertices(ply_path)
    verts = verts @ align[:3, :3].T + align[:3, 3]
    seg_idx = np.asarray(_need(_load_json(segs_path), "segIndices", "segments file", str(segs_path)))
    if len(seg_idx) != len(verts):
        raise SceneValidationError(
            f"{segs_path}: segIndices has {len(seg_idx)} entries but the mesh {ply_path.name} has {len(verts)} vertices")
    groups = _need(agg, "segGroups", "aggregation file", str(agg_path))
    if not groups:
        raise SceneValidationError(f"{agg_path}: segGroups is empty: the scan has no annotated objects")
    objects, kept = [], []
    for i, g in enumerate(groups):
        where = f"segGroups[{i}]"
        label = str(_need(g, "label", where, str(agg_path)))
        category = labels(label)
        if category is None:  # structure (wall, floor, ceiling) or mapped to nothing
            continue
        mask = np.isin(seg_idx, _need(g, "segments", where, str(agg_path)))
        if not mask.any():
            warnings.warn(f"{agg_path}: {where} ({label!r}) has no mesh vertices; skipped", stacklevel=2)
            continue
        pts = verts[mask]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        size = np.maximum(hi - lo, 1e-3)  # a planar segment still gets a thin, valid box
        objects.append(SceneObject(int(g.get("objectId", g.get("id", i))), category,
                                   Box3D(tuple(((lo + hi) / 2).tolist()), tuple(size.tolist()), 0.0)))
        kept.append(label)
    if not objects:
        raise SceneValidationError(f"{agg_path}: no objects left once structure (wall, floor, ceiling) and "
                                   "empty groups are dropped")
    _warn_unmapped(labels, kept, str(agg_path))
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    room = _floor_room(verts, room_height if room_height is not None else hi[2] - min(lo[2], 0.0), scene_id)
    scene = Scene(scene_id, [room], objects, _scannet_frames(folder, align, fps), fps, str(folder))
    return frustum_visibility(validate_scene(scene)) if scene.frames else validate_scene(scene)


# ---------------------------------------------------------------- per-object box lists in JSON


def _upright_box(axes: Any, lengths: np.ndarray, where: str, source: str) -> tuple[tuple[float, ...], float]:
    """(size, yaw) of a box given by its three axes as the ROWS of a 3x3 (unit vectors in world coordinates) and
    the box's extent along each; the axis closest to vertical becomes the box's z, the first other one its x.
    Tilted boxes are rejected: the scene schema has gravity-aligned boxes only."""
    a = _finite(axes, f"{where} axes", source).reshape(-1)
    if a.size != 9:
        raise SceneValidationError(f"{source}: {where} rotation must have 9 numbers, got {a.size}")
    a = a.reshape(3, 3)
    up = int(np.argmax(np.abs(a[:, 2])))
    if abs(abs(a[up, 2]) - 1) > 0.02:
        raise SceneValidationError(f"{source}: {where} box is tilted (no axis within 0.02 of vertical); "
                                   "only boxes rotated about the vertical axis are supported")
    x, y = (k for k in range(3) if k != up)
    return (float(lengths[x]), float(lengths[y]), float(lengths[up])), math.atan2(a[x, 1], a[x, 0])


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


def _check_sizes(objects: list[SceneObject], src: str) -> None:
    if not objects:
        raise SceneValidationError(f"{src}: the box list is empty")
    for o in objects:  # validated before a room fallback uses the boxes
        if min(o.box.size) <= 0:
            raise SceneValidationError(f"{src}: object {o.id} ({o.category!r}) has a non-positive box size "
                                       f"{list(o.box.size)}")


def read_box_json(path: str | Path, *, label_map: LabelMap | str | Path | None = None) -> Scene:
    """Per-object box list JSON -> Scene; categories go through label_map when one is given."""
    path = Path(path)
    src = str(path)
    d = _load_json(path)
    labels = _as_label_map(label_map) if label_map is not None else None
    objects, kept = [], []
    for i, item in enumerate(_need(d, "objects", "file", src)):
        where = f"objects[{i}]"
        label = item.get("category", item.get("label")) if isinstance(item, dict) else None
        if label is None:
            raise SceneValidationError(f"{src}: {where} is missing required field 'category' (or 'label')")
        category = labels(str(label)) if labels else str(label)
        if category is None:
            continue
        center = _finite(_need(item, "center", where, src), f"{where} center", src, 3)
        size_key = "size" if "size" in item else "extent"
        size = _finite(_need(item, size_key, where, src), f"{where} {size_key}", src, 3)
        yaw = float(item.get("yaw", item.get("heading", 0.0)))
        if "rotation" in item:  # box-to-world rotation: its columns are the box's axes
            rot = _finite(item["rotation"], f"{where} rotation", src)
            if rot.size != 9:
                raise SceneValidationError(f"{src}: {where} rotation must have 9 numbers, got {rot.size}")
            size, yaw = _upright_box(rot.reshape(3, 3).T, size, where, src)
        objects.append(SceneObject(int(item.get("id", i)), category, Box3D(tuple(center.tolist()), tuple(size), yaw)))
        kept.append(str(label))
    _check_sizes(objects, src)
    if labels:
        _warn_unmapped(labels, kept, src)
    room = _room_from(d.get("room"), objects, src)
    frames = [frame_from_dict(f, i, src) for i, f in enumerate(d.get("frames", []))]
    fps = float(d.get("fps", 30.0))
    scene = Scene(str(d.get("scene_id", path.stem)), [room], objects, frames, fps, src)
    return frustum_visibility(validate_scene(scene)) if frames else validate_scene(scene)


# ---------------------------------------------------------------- ARKitScenes 3DOD

_ARKIT_ANNOTATION = "_3dod_annotation.json"


def read_arkitscenes(path: str | Path, *, label_map: LabelMap | str | Path | None = None) -> Scene:
    """ARKitScenes 3DOD scan (the folder, or its <video_id>_3dod_annotation.json) -> Scene.

    Boxes follow Apple's ARKitScenes box utilities: normalizedAxes is a row-major 3x3 whose ROWS are the box's
    axes in world coordinates (corners = R^T @ local corner + centroid), axesLengths the extents along them.
    The room is the footprint of <video_id>_3dod_mesh.ply (convex hull) and its height the mesh's z extent; the
    scene is shifted so that the mesh's lowest point (the floor) is z = 0. Without the mesh the room is the
    rectangle around the boxes (with a warning).
    """
    path = Path(path)
    if path.is_dir():
        path = _only(path, sorted(path.glob(f"*{_ARKIT_ANNOTATION}")), "ARKitScenes annotation",
                     f"<video_id>{_ARKIT_ANNOTATION}")
    src = str(path)
    d = _load_json(path)
    labels = _as_label_map(label_map) if label_map is not None else arkitscenes_labels()
    objects, kept = [], []
    for i, item in enumerate(_need(d, "data", "file", src)):
        where = f"data[{i}]"
        label = str(_need(item, "label", where, src))
        category = labels(label)
        if category is None:
            continue
        obb = _need(_need(item, "segments", where, src), "obbAligned", f"{where}.segments", src)
        center = _finite(_need(obb, "centroid", where, src), f"{where} centroid", src, 3)
        lengths = _finite(_need(obb, "axesLengths", where, src), f"{where} axesLengths", src, 3)
        size, yaw = _upright_box(_need(obb, "normalizedAxes", where, src), lengths, where, src)
        objects.append(SceneObject(i, category, Box3D(tuple(center.tolist()), size, yaw)))
        kept.append(label)
    _check_sizes(objects, src)
    _warn_unmapped(labels, kept, src)
    video_id = path.name.removesuffix(_ARKIT_ANNOTATION) if path.name.endswith(_ARKIT_ANNOTATION) else path.stem
    mesh = path.with_name(f"{video_id}_3dod_mesh.ply")
    if mesh.is_file():
        verts = read_ply_vertices(mesh)
        floor = float(verts[:, 2].min())
        room = _floor_room(verts, float(verts[:, 2].max()) - floor, video_id)
        objects = [SceneObject(o.id, o.category, Box3D((*o.box.center[:2], o.box.center[2] - floor), o.box.size,
                                                       o.box.yaw)) for o in objects]
    else:
        warnings.warn(f"{mesh} not found: the room is the rectangle around the boxes", stacklevel=2)
        room = _room_from(None, objects, src)
    return validate_scene(Scene(video_id, [room], objects, [], 30.0, src))


# ---------------------------------------------------------------- dispatch


def read_scene(path: str | Path, *, label_map: LabelMap | str | Path | None = None,
               allow_unaligned: bool = False) -> Scene:
    """Detect the layout of path (folder or JSON file) and read it; raise UnknownLayoutError otherwise.

    label_map (ScanNet, ARKitScenes, box lists) and allow_unaligned (ScanNet) are passed to the reader."""
    path = Path(path)
    if not path.exists():
        raise SceneValidationError(f"{path}: no such file or folder")
    if path.is_dir():
        if list(path.glob("*.aggregation.json")):
            return read_scannet(path, label_map=label_map, allow_unaligned=allow_unaligned)
        if list(path.glob(f"*{_ARKIT_ANNOTATION}")):
            return read_arkitscenes(path, label_map=label_map)
        if (path / "scene.json").exists():
            return read_scene(path / "scene.json")
        raise UnknownLayoutError(f"{path}: folder has no ScanNet *.aggregation.json, ARKitScenes "
                                 f"*{_ARKIT_ANNOTATION} or scene.json")
    if path.suffix.lower() != ".json":
        raise UnknownLayoutError(f"{path}: unknown annotation layout (expected a folder or a .json file)")
    d = _load_json(path)
    if isinstance(d, dict) and str(d.get("format", "")).startswith("spatial-ttt-scene"):
        return scene_from_dict(d, str(path))
    if isinstance(d, dict) and "data" in d and "objects" not in d:
        return read_arkitscenes(path, label_map=label_map)
    if isinstance(d, dict) and "objects" in d:
        return read_box_json(path, label_map=label_map)
    raise UnknownLayoutError(f"{path}: unknown JSON layout (expected 'format', 'objects' or 'data' keys)")
