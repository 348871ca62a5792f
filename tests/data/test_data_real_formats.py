"""ScanNet and ARKitScenes readers on files written here in the datasets' own formats (scan data cannot be shipped):
ScanNet's <id>.aggregation.json, <id>_vh_clean_2.0.010000.segs.json, <id>_vh_clean_2.ply (binary little endian
with alpha and faces, as the release has it, or ascii), <id>.txt, scannetv2-labels.combined.tsv at the dataset root;
ARKitScenes' <video_id>_3dod_annotation.json and <video_id>_3dod_mesh.ply."""

import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from spatial_ttt.data.describe import describe_scene
from spatial_ttt.data.qa import generate_qa
from spatial_ttt.data.readers import read_ply_vertices, read_scene
from spatial_ttt.data.scene import Room, Scene, SceneValidationError

# ---------------------------------------------------------------- writers in the release formats

TSV_HEADER = ("id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\tModelNet40\t"
              "ModelNet10\tShapeNetCore55\tsynsetoffset\twnsynsetid\twnsynsetkey\tmpcat40\tmpcat40index")
# (raw_category, category, nyu40id, nyu40class) rows shaped like the release's
TSV_ROWS = [("wall", "wall", 1, "wall"), ("floor", "floor", 2, "floor"), ("ceiling", "ceiling", 22, "ceiling"),
            ("chair", "chair", 5, "chair"), ("office chair", "office chair", 5, "chair"),
            ("cabinet", "cabinet", 3, "cabinet"), ("kitchen cabinets", "kitchen cabinet", 3, "cabinet"),
            ("trash can", "trash can", 39, "otherfurniture"), ("tv", "tv", 25, "television")]


def write_ply(path, verts, faces=((0, 1, 2),), fmt="binary_little_endian", faces_first=False):
    """A mesh PLY as ScanNet writes it: x y z float, red green blue alpha uchar, then triangles."""
    n = len(verts)
    vertex_h = ("element vertex {}\nproperty float x\nproperty float y\nproperty float z\nproperty uchar red\n"
                "property uchar green\nproperty uchar blue\nproperty uchar alpha\n").format(n)
    face_h = "element face {}\nproperty list uchar int vertex_indices\n".format(len(faces))
    header = f"ply\nformat {fmt} 1.0\ncomment VCGLIB generated\n"
    header += (face_h + vertex_h if faces_first else vertex_h + face_h) + "end_header\n"
    if fmt == "ascii":
        vdata = "".join(f"{x} {y} {z} 128 128 128 255\n" for x, y, z in verts).encode()
        fdata = "".join("3 " + " ".join(map(str, f)) + "\n" for f in faces).encode()
    else:
        rec = np.zeros(n, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgba", "u1", 4)])
        rec["x"], rec["y"], rec["z"] = np.asarray(verts, dtype=float).T
        vdata = rec.tobytes()
        fdata = b"".join(np.uint8(3).tobytes() + np.asarray(f, "<i4").tobytes() for f in faces)
    path.write_bytes(header.encode() + (fdata + vdata if faces_first else vdata + fdata))


def _rot_z(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


# the scan frame is the aligned frame turned by 30 degrees and shifted: axisAlignment maps scan -> aligned
ALIGN = np.eye(4)
ALIGN[:3, :3], ALIGN[:3, 3] = _rot_z(30), (2.0, -1.0, 0.05)


def _box_points(lo, hi):
    return [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]


def scannet_scan(root, scene_id="scene0000_00", *, fmt="binary_little_endian", faces_first=False,
                 alignment=True, groups=None):
    """<root>/scans/<id>/ with a pentagon room (hull 27 m2, bounding rectangle 30 m2), 2.5 m high, and objects
    given in the aligned frame; returns the scan folder."""
    folder = root / "scans" / scene_id
    folder.mkdir(parents=True)
    floor = [[0, 0, 0], [6, 0, 0], [6, 3, 0], [3, 5, 0], [0, 5, 0]]
    parts = {  # segment id -> aligned points
        0: floor, 1: [[x, y, 2.5] for x, y, _ in floor], 2: [[0, 0, 1.2], [6, 0, 1.2]],
        3: _box_points((0, 0, 0), (1, 0.5, 0.9)), 4: _box_points((1, 0, 0), (2, 0.5, 0.9)),
        5: _box_points((2, 0, 0), (3, 0.5, 0.9)), 6: _box_points((2, 2, 0), (2.5, 2.5, 1.0)),
        7: _box_points((4, 2, 0), (4.6, 2.6, 1.1)), 8: _box_points((5, 0.5, 0), (5.4, 0.9, 0.6)),
        9: _box_points((0.5, 4, 0.5), (1.5, 4.1, 1.1)),
    }
    aligned = np.array([p for s in parts.values() for p in s], dtype=float)
    seg = [s for s, pts in parts.items() for _ in pts]
    inv = np.linalg.inv(ALIGN)
    raw = aligned @ inv[:3, :3].T + inv[:3, 3]
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", raw, fmt=fmt, faces_first=faces_first)
    (folder / f"{scene_id}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(
        {"params": {"kThresh": "0.0001", "segMinVerts": "20", "minPoints": "750", "maxPoints": "30000",
                    "thinThresh": "0.05", "flatThresh": "0.001", "minLength": "0.02", "maxLength": "1"},
         "sceneId": f"{scene_id}_vh_clean_2", "segIndices": seg}))
    # the high-resolution mesh's files sit beside it (and sort first); they must not be picked
    (folder / f"{scene_id}_vh_clean.segs.json").write_text(json.dumps({"segIndices": [0] * 1000}))
    (folder / f"{scene_id}_vh_clean.aggregation.json").write_text(json.dumps({"segGroups": []}))
    if groups is None:
        groups = [("wall", [2]), ("floor", [0]), ("ceiling", [1]), ("Cabinet ", [3]), ("kitchen cabinets", [4]),
                  ("cabinet", [5]), ("chair", [6]), ("office chair", [7]), ("trash can", [8]), ("tv", [9])]
    (folder / f"{scene_id}.aggregation.json").write_text(json.dumps({
        "sceneId": f"scannet.{scene_id}", "appId": "Aggregator.v2",
        "segGroups": [{"id": i, "objectId": i, "segments": segs, "label": label}
                      for i, (label, segs) in enumerate(groups)],
        "segmentsFile": f"scannet.{scene_id}_vh_clean_2.0.010000.segs.json"}))
    meta = ["colorHeight = 968", "colorWidth = 1296", "fx_color = 1170.187988", "numColorFrames = 5578",
            "sceneType = Living room / Lounge"]
    if alignment:
        meta.insert(0, "axisAlignment = " + " ".join(f"{v:.6f}" for v in ALIGN.reshape(-1)) + " ")
    (folder / f"{scene_id}.txt").write_text("\n".join(meta) + "\n")
    (root / "scannetv2-labels.combined.tsv").write_text(
        TSV_HEADER + "\n" + "".join(f"{i}\t{r}\t{c}\t1\t{nid}\t0\t{c}\t{nc}\t\t\t\t\t\t\t\t\t\n"
                                    for i, (r, c, nid, nc) in enumerate(TSV_ROWS, 1)))
    return folder


# ---------------------------------------------------------------- ScanNet


@pytest.mark.parametrize("fmt, faces_first", [("binary_little_endian", False), ("ascii", False),
                                              ("binary_little_endian", True), ("ascii", True)])
def test_scannet_scan_folder(tmp_path, fmt, faces_first):
    folder = scannet_scan(tmp_path, fmt=fmt, faces_first=faces_first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete scan reads without any warning
        s = read_scene(folder)
    counts = {c: len(v) for c, v in s.categories().items()}
    # Cabinet / kitchen cabinets / cabinet are one category; wall, floor, ceiling are gone; NYU40 "television" -> tv
    assert counts == {"cabinet": 3, "chair": 2, "trash can": 1, "tv": 1}
    by_id = {o.id: o for o in s.objects}
    np.testing.assert_allclose(by_id[3].box.center, (0.5, 0.25, 0.45), atol=1e-5)  # aligned frame
    np.testing.assert_allclose(by_id[7].box.size, (0.6, 0.6, 1.1), atol=1e-5)
    # room: the footprint's convex hull (27 m2), not the bounding rectangle (30 m2)
    assert s.total_area() == pytest.approx(27.0, abs=1e-4) and s.rooms[0].height == pytest.approx(2.5, abs=1e-5)
    qa = generate_qa(s, seed=0, per_type=50)
    text = " ".join(q.question + " " + " ".join(q.options) for q in qa)
    assert not any(w in text for w in ("wall", "floor", "ceiling"))
    counting = {q.question: q.answer for q in qa if q.question_type == "object_counting"}
    assert counting == {"How many cabinet(s) are in this room?": "3", "How many chair(s) are in this room?": "2"}
    assert ",," not in describe_scene(s, seed=0)


def test_ply_vertices_are_read_exactly(tmp_path):
    verts = np.array([[0.5, -1.25, 3.0], [1, 2, 3], [-4, 0.125, 8]])
    for i, kw in enumerate([{}, {"fmt": "ascii"}, {"faces_first": True}, {"fmt": "ascii", "faces_first": True},
                            {"fmt": "binary_little_endian", "faces_first": True}]):
        write_ply(tmp_path / f"{i}.ply", verts, faces=((0, 1, 2), (2, 1, 0)), **kw)
        np.testing.assert_array_equal(read_ply_vertices(tmp_path / f"{i}.ply"), verts)


def test_scannet_needs_axis_alignment(tmp_path):
    folder = scannet_scan(tmp_path, alignment=False)
    with pytest.raises(SceneValidationError, match=r"scene0000_00\.txt has no axisAlignment: room size and object "
                                                   r"sizes would be measured in the raw, unaligned scan frame; pass "
                                                   r"allow_unaligned=True"):
        read_scene(folder)
    with pytest.warns(UserWarning, match="has no axisAlignment"):
        s = read_scene(folder, allow_unaligned=True)
    # in the scan frame (turned by 30 degrees) the first cabinet's axis-aligned box is wider than 1 x 0.5 m
    cab = next(o for o in s.objects if o.id == 3)
    assert cab.box.size[0] == pytest.approx(math.cos(math.radians(30)) + 0.5 * math.sin(math.radians(30)), abs=1e-5)


def test_scannet_empty_and_all_structure(tmp_path):
    folder = scannet_scan(tmp_path / "a", groups=[])
    with pytest.raises(SceneValidationError, match=r"aggregation\.json: segGroups is empty: the scan has no "
                                                   "annotated objects"):
        read_scene(folder)
    folder = scannet_scan(tmp_path / "b", groups=[("wall", [2]), ("floor", [0])])
    with pytest.raises(SceneValidationError, match="no objects left once structure"):
        read_scene(folder)
    empty = Scene("e", [Room(((0, 0), (1, 0), (1, 1)), 2.0)], [], source="e.json")
    with pytest.raises(SceneValidationError, match="e.json: scene 'e' has no objects to describe"):
        describe_scene(empty, seed=0)


def test_scannet_group_without_vertices_is_skipped(tmp_path):
    folder = scannet_scan(tmp_path, groups=[("chair", [6]), ("lamp", [77]), ("chair", [7])])
    with pytest.warns(UserWarning, match=r"segGroups\[1\] \('lamp'\) has no mesh vertices; skipped"):
        s = read_scene(folder)
    assert [o.category for o in s.objects] == ["chair", "chair"]


def test_scannet_label_maps(tmp_path):
    folder = scannet_scan(tmp_path, groups=[("Cabinet ", [3]), ("chair", [6]), ("mystery box", [8])])
    with pytest.warns(UserWarning, match=r"labels not in the label map .*scannetv2-labels\.combined\.tsv, kept "
                                         r"as written: mystery box"):
        assert sorted(o.category for o in read_scene(folder).objects) == ["cabinet", "chair", "mystery box"]
    user = tmp_path / "mine.json"
    user.write_text(json.dumps({"cabinet": "storage", "chair": None, "mystery box": "television"}))
    # a user's map is taken as written (no NYU40 respelling), null drops the label
    assert sorted(o.category for o in read_scene(folder, label_map=user).objects) == ["storage", "television"]
    (tmp_path / "scannetv2-labels.combined.tsv").unlink()
    with pytest.warns(UserWarning, match="no scannetv2-labels.combined.tsv here or above; raw labels are used"):
        assert sorted(o.category for o in read_scene(folder).objects) == ["cabinet", "chair", "mystery box"]
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n")
    with pytest.raises(SceneValidationError, match=r"bad\.tsv: a tsv label map needs the columns"):
        read_scene(folder, label_map=bad)


def test_scannet_segments_must_match_the_mesh(tmp_path):
    folder = scannet_scan(tmp_path)
    (folder / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": [0, 0]}))
    with pytest.raises(SceneValidationError, match=r"010000\.segs\.json: segIndices has 2 entries but the mesh "
                                                   r"scene0000_00_vh_clean_2\.ply has \d+ vertices"):
        read_scene(folder)
    (folder / "scene0000_00_vh_clean_2.0.010000.segs.json").unlink()
    with pytest.raises(SceneValidationError, match=r"expected one segments file of scene0000_00_vh_clean_2\.ply"):
        read_scene(folder)


def test_scannet_cli_flags(tmp_path):
    import typer
    from typer.testing import CliRunner

    from spatial_ttt.data.cli import register

    folder = scannet_scan(tmp_path, alignment=False, groups=[("Cabinet ", [3]), ("chair", [6]), ("chair", [7])])
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    res = CliRunner().invoke(app, ["data", "validate", str(folder)], env={"COLUMNS": "300"})
    assert res.exit_code == 2 and "has no axisAlignment" in res.output
    user = tmp_path / "map.json"
    user.write_text(json.dumps({"cabinet": "storage"}))
    # the real command, in a fresh process, with both flags
    res = subprocess.run([sys.executable, "-m", "spatial_ttt", "data", "validate", str(folder), "--allow-unaligned",
                          "--label-map", str(user)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("scene0000_00: 1 room(s), 27.0 m2, 3 objects in 2 categories")
    assert "has no axisAlignment" in res.stderr and "kept as written: chair" in res.stderr  # the warnings


# ---------------------------------------------------------------- ARKitScenes


def apple_corners(size, center, rotmat):
    """ARKitScenes' threedod/benchmark_scripts/utils/box_utils.py compute_box_3d: corners = R^T @ local + c."""
    l, h, w = (v / 2 for v in size)
    local = np.array([[l, l, -l, -l, l, l, -l, -l], [h, -h, -h, h, h, -h, -h, h], [w, w, w, w, -w, -w, -w, -w]])
    return (np.asarray(rotmat).T @ local).T + np.asarray(center)


def _same_corners(a, b):
    key = lambda c: sorted(map(tuple, np.round(c, 6)))  # noqa: E731
    np.testing.assert_allclose(key(a), key(b), atol=1e-6)


def arkit_scan(root, video_id="41069021", mesh=True):
    folder = root / video_id
    folder.mkdir(parents=True)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    boxes = [  # label, centroid, axesLengths, normalizedAxes (row-major 3x3, as the release writes it)
        ("bed", [1.0, 2.0, -0.95], [2.0, 0.8, 0.5], [c, s, 0, -s, c, 0, 0, 0, 1]),
        ("table", [3.0, 1.0, -0.8], [0.8, 1.2, 0.8], [0, 0, 1, c, s, 0, -s, c, 0]),  # vertical axis listed first
        ("tv_monitor", [4.0, 3.0, -0.2], [1.0, 0.1, 0.6], [1, 0, 0, 0, 1, 0, 0, 0, 1]),
        ("chair", [2.0, 3.0, -0.7], [0.5, 0.5, 1.0], [0, 1, 0, -1, 0, 0, 0, 0, 1]),
    ]
    (folder / f"{video_id}_3dod_annotation.json").write_text(json.dumps({
        "data": [{"uid": f"u{i}", "label": lab, "attributes": {}, "segments": {"obbAligned": {
            "centroid": cen, "axesLengths": ln, "normalizedAxes": ax, "min": [0, 0, 0], "max": [0, 0, 0]}}}
            for i, (lab, cen, ln, ax) in enumerate(boxes)], "stats": {}, "version": "v1"}))
    if mesh:  # floor at z = -1.2 (ARKit's origin is where the phone started), room 5 x 4 m, 2.6 m high
        pts = [[x, y, z] for x in (0, 5) for y in (0, 4) for z in (-1.2, 1.4)]
        write_ply(folder / f"{video_id}_3dod_mesh.ply", pts)
    return folder, boxes


def test_arkitscenes_boxes_follow_apple_box_utils(tmp_path):
    folder, boxes = arkit_scan(tmp_path)
    s = read_scene(folder)  # the folder is recognised; its mesh gives the room
    assert s.scene_id == "41069021" and [o.category for o in s.objects] == ["bed", "table", "tv", "chair"]
    for obj, (_, center, lengths, axes) in zip(s.objects, boxes):
        want = apple_corners(lengths, center, np.reshape(axes, (3, 3))) + [0, 0, 1.2]  # floor moved to z = 0
        _same_corners(obj.box.corners(), want)
    bed = s.objects[0]
    assert bed.box.yaw == pytest.approx(math.radians(30)) and bed.box.size == pytest.approx((2.0, 0.8, 0.5))
    assert s.objects[1].box.size == pytest.approx((1.2, 0.8, 0.8))  # the vertical axis (first row) is z
    assert s.total_area() == pytest.approx(20.0) and s.rooms[0].height == pytest.approx(2.6)
    assert read_scene(folder / "41069021_3dod_annotation.json").total_area() == pytest.approx(20.0)


def test_arkitscenes_without_mesh_and_tilted(tmp_path):
    folder, _ = arkit_scan(tmp_path, mesh=False)
    with pytest.warns(UserWarning, match="41069021_3dod_mesh.ply not found: the room is the rectangle"):
        s = read_scene(folder)
    assert s.rooms[0].height == pytest.approx(max(o.box.z_max for o in s.objects))
    ann = folder / "41069021_3dod_annotation.json"
    d = json.loads(ann.read_text())
    d["data"][0]["segments"]["obbAligned"]["normalizedAxes"] = [1, 0, 0, 0, 0.8, 0.6, 0, -0.6, 0.8]
    ann.write_text(json.dumps(d))
    with pytest.raises(SceneValidationError, match=r"data\[0\] box is tilted"):
        read_scene(ann)
