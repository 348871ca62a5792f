import json
import math

import numpy as np
import pytest

from spatial_ttt.data.readers import UnknownLayoutError, read_scene
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
