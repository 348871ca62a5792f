import json
import math

import numpy as np
import pytest

from spatial_ttt.data.readers import UnknownLayoutError, read_ply_vertices, read_scene
from spatial_ttt.data.scene import SceneValidationError, load_scene, save_scene, scene_to_dict


def _scene_dict():
    return {"format": "spatial-ttt-scene/1", "scene_id": "s", "rooms": [{"polygon": [[0, 0], [4, 0], [4, 3], [0, 3]],
            "height": 2.5}], "objects": [{"id": 0, "category": "chair", "center": [1, 1, 0.5], "size": [0.5, 0.5, 1]}],
            "frames": [{"timestamp": 0, "pose": np.eye(4).tolist(),
                        "intrinsics": {"fx": 100, "fy": 100, "cx": 50, "cy": 40, "width": 100, "height": 80}}]}


def _write(tmp_path, d, name="scene.json"):
    p = tmp_path / name
    p.write_text(json.dumps(d))
    return p


def test_round_trip(tmp_path, hand_scene):
    save_scene(hand_scene, tmp_path / "a.json")
    again = load_scene(tmp_path / "a.json")
    assert scene_to_dict(again) == scene_to_dict(hand_scene)
    assert again.total_area() == pytest.approx(24.0)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["objects"][0].update(size=[0.5, -0.2, 1]), "non-positive box size"),
    (lambda d: d["objects"][0].pop("center"), "missing required field 'center'"),
    (lambda d: d["frames"][0].update(pose=(np.eye(4) * 2).tolist()), "last row"),
    (lambda d: d["frames"][0].update(pose=np.diag([2.0, 1, 1, 1]).tolist()), "not a rigid transform"),
    (lambda d: d["frames"][0].update(pose=np.diag([1.0, 1, -1, 1]).tolist()), "not a rigid transform"),
    (lambda d: d["rooms"][0].update(polygon=[[0, 0], [1, 1]]), "at least 3 points"),
    (lambda d: d["frames"][0].update(visible=[7]), "unknown visible object ids [7]"),
    (lambda d: d["objects"][0].update(center=[1, "x", 0]), "must be numeric"),
])
def test_validation_errors_name_file_and_problem(tmp_path, mutate, message):
    d = _scene_dict()
    mutate(d)
    p = _write(tmp_path, d)
    with pytest.raises(SceneValidationError) as e:
        read_scene(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_unknown_layouts(tmp_path):
    with pytest.raises(UnknownLayoutError, match="unknown JSON layout"):
        read_scene(_write(tmp_path, {"foo": 1}, "x.json"))
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UnknownLayoutError):
        read_scene(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnknownLayoutError, match="aggregation"):
        read_scene(tmp_path / "empty")
    with pytest.raises(SceneValidationError, match="no such file"):
        read_scene(tmp_path / "missing.json")


def _write_ply(path, verts, binary):
    header = ("ply\nformat {} 1.0\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\nelement face 0\n"
              "property list uchar int vertex_indices\nend_header\n").format(
        "binary_little_endian" if binary else "ascii", len(verts))
    with open(path, "wb") as fh:
        fh.write(header.encode())
        if binary:
            rec = np.zeros(len(verts), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
            rec["x"], rec["y"], rec["z"] = verts.T
            fh.write(rec.tobytes())
        else:
            fh.write("".join(f"{x} {y} {z} 128 128 128\n" for x, y, z in verts).encode())


@pytest.mark.parametrize("binary", [True, False])
def test_scannet_layout(tmp_path, binary):
    folder = tmp_path / "scene0000_00"
    folder.mkdir()
    # walls: segment 0 spans the room 0..5 x 0..4 x 0..2.5; a table (segment 1) and a chair (segments 2+3)
    verts = np.array([[0, 0, 0], [5, 4, 2.5],
                      [1, 1, 0], [2, 1.5, 0.75],
                      [3, 3, 0], [3.5, 3.2, 0.45], [3.1, 3.5, 0.9]], dtype=float)
    seg = [0, 0, 1, 1, 2, 2, 3]
    _write_ply(folder / "scene0000_00_vh_clean_2.ply", verts, binary)
    (folder / "scene0000_00_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": seg}))
    (folder / "scene0000_00.aggregation.json").write_text(json.dumps({"segGroups": [
        {"objectId": 0, "label": "table", "segments": [1]}, {"objectId": 1, "label": "chair", "segments": [2, 3]}]}))
    # an axis alignment that shifts everything by +10 in x
    (folder / "scene0000_00.txt").write_text("axisAlignment = 1 0 0 10 0 1 0 0 0 0 1 0 0 0 0 1\n")
    s = read_scene(folder)
    table, chair = s.objects
    assert table.category == "table" and table.box.center == pytest.approx((11.5, 1.25, 0.375))
    assert table.box.size == pytest.approx((1, 0.5, 0.75))
    assert chair.box.center == pytest.approx((13.25, 3.25, 0.45)) and chair.box.size == pytest.approx((0.5, 0.5, 0.9))
    assert s.total_area() == pytest.approx(20.0) and s.rooms[0].height == pytest.approx(2.5)
    np.testing.assert_allclose(read_ply_vertices(folder / "scene0000_00_vh_clean_2.ply"), verts, rtol=1e-6)


def test_scannet_errors(tmp_path):
    folder = tmp_path / "sc"
    folder.mkdir()
    (folder / "sc.aggregation.json").write_text(json.dumps({"segGroups": []}))
    with pytest.raises(SceneValidationError, match="segments file"):
        read_scene(folder)
    (folder / "sc_vh_clean_2.0.010000.segs.json").write_text(json.dumps({"segIndices": [0, 0]}))
    _write_ply(folder / "sc_vh_clean_2.ply", np.zeros((3, 3)), True)
    with pytest.raises(SceneValidationError, match="2 entries but the mesh"):
        read_scene(folder)


def test_box_list_json(tmp_path):
    yaw = math.radians(30)
    rot = [[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]]
    p = _write(tmp_path, {"scene_id": "boxes", "room": {"min": [0, 0, 0], "max": [5, 4, 2.7]}, "objects": [
        {"label": "sofa", "center": [1, 1, 0.4], "size": [2, 0.9, 0.8], "yaw": 0.5},
        {"category": "table", "center": [3, 2, 0.35], "extent": [1, 1, 0.7], "rotation": rot}]}, "boxes.json")
    s = read_scene(p)
    assert [o.category for o in s.objects] == ["sofa", "table"]
    assert s.objects[0].box.yaw == 0.5 and s.objects[1].box.yaw == pytest.approx(yaw)
    assert s.total_area() == pytest.approx(20.0) and s.rooms[0].height == pytest.approx(2.7)
    bad = _write(tmp_path, {"objects": [{"label": "x", "center": [0, 0, 0], "size": [1, 0, 1]}]}, "bad.json")
    with pytest.raises(SceneValidationError, match=r"bad.json: object 0 \('x'\) has a non-positive box size"):
        read_scene(bad)


def test_arkit_style_json(tmp_path):
    p = _write(tmp_path, {"data": [{"label": "bed", "segments": {"obbAligned": {
        "centroid": [1, 2, 0.3], "axesLengths": [2, 1.6, 0.6], "normalizedAxes": [0, 1, 0, -1, 0, 0, 0, 0, 1]}}}]},
        "arkit.json")
    s = read_scene(p)
    assert s.objects[0].box.yaw == pytest.approx(-math.pi / 2) and s.objects[0].box.size == (2, 1.6, 0.6)
    # no room annotated: the rectangle around the (rotated) bed footprint, 1.6 x 2 m
    assert s.total_area() == pytest.approx(3.2)
