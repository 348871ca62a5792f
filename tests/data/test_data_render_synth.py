import json

import numpy as np
import pytest

from spatial_ttt.data.geometry import box_image_rect, polygon_distance
from spatial_ttt.data.render import NO_OBJECT, BoxRenderer, read_video, render_scene, write_video
from spatial_ttt.data.scene import Box3D, Frame, Intrinsics, scene_to_dict
from spatial_ttt.data.synth import CATEGORIES, sample_scene

PALETTE = {k: c.color for k, c in CATEGORIES.items()}


def test_projected_box_contains_its_pixels(level_pose):
    k = Intrinsics(90, 90, 63.5, 47.5, 128, 96)
    boxes = [Box3D((0.3, 4, 0.2), (1.0, 0.6, 0.8), 0.6), Box3D((-1.2, 6, -0.3), (0.5, 0.5, 1.5), -0.3)]
    frame = Frame(0, 0.0, level_pose(0, 0, 0), k)
    with BoxRenderer(128, 96) as r:
        r.set_boxes([(b, (200, 50, 50), i) for i, b in enumerate(boxes)])
        rgb, ids = r.render(frame)
    assert rgb.shape == (96, 128, 3) and ids.shape == (96, 128)
    for i, b in enumerate(boxes):
        v, u = np.nonzero(ids == i)
        assert len(u) > 100
        u0, v0, u1, v1 = box_image_rect(b, frame)
        # every pixel centre of the object lies in the analytic rectangle, and the rectangle is tight
        assert u.min() >= u0 - 0.5 and u.max() <= u1 + 0.5 and v.min() >= v0 - 0.5 and v.max() <= v1 + 0.5
        assert abs(u.min() - u0) <= 1.5 and abs(u.max() - u1) <= 1.5
        assert abs(v.min() - v0) <= 1.5 and abs(v.max() - v1) <= 1.5
    assert (ids == NO_OBJECT).any()
    assert np.all(rgb[ids == 0].astype(int).sum(axis=1) > 0)


def test_occlusion_hides_far_box(level_pose):
    k = Intrinsics(60, 60, 31.5, 23.5, 64, 48)
    near, far = Box3D((0, 3, 0), (2, 0.2, 2)), Box3D((0, 6, 0), (0.5, 0.5, 0.5))
    with BoxRenderer(64, 48) as r:
        r.set_boxes([(near, (0, 0, 255), 0), (far, (255, 0, 0), 1)])
        _, ids = r.render(Frame(0, 0.0, level_pose(0, 0, 0), k))
    assert (ids == 0).sum() > 0 and (ids == 1).sum() == 0


def test_video_round_trip(tmp_path):
    frames = [np.full((48, 64, 3), c, dtype=np.uint8) for c in (30, 120, 220)]
    assert write_video(frames, tmp_path / "v.mp4", fps=5) == 3
    back = read_video(tmp_path / "v.mp4")
    assert len(back) == 3 and back[0].shape == (48, 64, 3)
    assert [int(round(f.mean())) for f in back] == pytest.approx([30, 120, 220], abs=3)
    with pytest.raises(ValueError, match="even"):
        write_video([np.zeros((47, 64, 3), np.uint8)], tmp_path / "odd.mp4", fps=5)
    assert not (tmp_path / "odd.mp4").exists() and list(tmp_path.glob(".*")) == []


def test_synthetic_scene_determinism_and_layout():
    a, b = sample_scene(5, "s", num_frames=40, num_rooms=2), sample_scene(5, "s", num_frames=40, num_rooms=2)
    assert json.dumps(scene_to_dict(a.scene)) == json.dumps(scene_to_dict(b.scene))
    assert scene_to_dict(sample_scene(6, "s", num_frames=40, num_rooms=2).scene) != scene_to_dict(a.scene)
    s = a.scene
    assert len(s.rooms) == 2 and len(s.frames) == 40
    floor = [o for o in s.objects if CATEGORIES[o.category].placement != "on"]
    for i, o in enumerate(floor):
        lo, hi = s.rooms[o.room].bounds()
        fp = o.box.footprint()
        assert np.all(fp >= lo - 1e-6) and np.all(fp <= hi + 1e-6)
        for p in floor[i + 1:]:
            assert polygon_distance(fp, p.box.footprint()) >= 0.1 - 1e-9
    for o in s.objects:
        if CATEGORIES[o.category].placement == "on":  # rests exactly on some support
            assert any(abs(o.box.z_min - p.box.z_max) < 1e-9 for p in floor)


def test_render_scene_visibility_matches_pixels(tmp_path):
    synth = sample_scene(2, "s", num_frames=12, width=96, height=64)
    scene = render_scene(synth.scene, synth.shell, tmp_path / "v.mp4", PALETTE, min_pixels=5)
    assert scene.has_visibility() and any(f.visible for f in scene.frames)
    # an object listed as visible projects inside the image
    for f in scene.frames:
        for oid in f.visible:
            assert box_image_rect(scene.object(oid).box, f) is not None
    assert len(read_video(tmp_path / "v.mp4")) == 12
    # the same scene renders to identical pixels
    with BoxRenderer(96, 64) as r1, BoxRenderer(96, 64) as r2:
        items = [(o.box, PALETTE[o.category], o.id) for o in scene.objects]
        r1.set_boxes(items)
        r2.set_boxes(items)
        f = scene.frames[3]
        assert all(np.array_equal(x, y) for x, y in zip(r1.render(f), r2.render(f)))


def test_long_multi_room_stream(tmp_path):
    synth = sample_scene(9, "long", num_frames=240, num_rooms=3, width=64, height=48)
    scene = render_scene(synth.scene, synth.shell, tmp_path / "v.mp4", PALETTE, min_pixels=3)
    seen_rooms = {scene.object(o).room for f in scene.frames for o in f.visible}
    assert seen_rooms == {0, 1, 2}
    # the walk visits the rooms in order: first appearances of room 0 objects precede those of room 2
    first = scene.first_appearance()
    r0 = [first[o.id] for o in scene.objects if o.room == 0 and o.id in first]
    r2 = [first[o.id] for o in scene.objects if o.room == 2 and o.id in first]
    assert min(r0) < min(r2)
    assert scene.total_area() == pytest.approx(sum(r.area() for r in synth.scene.rooms))
