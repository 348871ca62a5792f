import math

import numpy as np
import pytest

from spatial_ttt.data.geometry import (
    box_distance, box_image_rect, direction_label, egocentric_angle, near_boundary, signed_angle, stacked_on,
    turn_label,
)
from spatial_ttt.data.scene import Box3D, Frame, Intrinsics


def test_box_distance_hand_cases(hand_scene):
    o = {x.id: x.box for x in hand_scene.objects}
    assert box_distance(o[0], o[1]) == pytest.approx(1.5)  # bed x<=2, table x>=3.5
    assert box_distance(o[0], o[3]) == pytest.approx(1.25)  # bed y<=1.5, chair y>=2.75
    assert box_distance(o[0], o[2]) == pytest.approx(math.hypot(1.75, 1.25))
    assert box_distance(o[0], o[4]) == pytest.approx(math.hypot(1.9, 0.25))  # lamp floats 0.25 above bed top
    assert box_distance(o[0], o[6]) == pytest.approx(math.hypot(2.25, 0.4))
    assert box_distance(o[1], o[4]) == 0.0  # touching
    assert box_distance(o[0], o[0]) == 0.0


def test_box_distance_rotated():
    diamond = Box3D((0, 0, 0.5), (2, 2, 1), math.pi / 4)  # corners at +-sqrt(2) on the axes
    cube = Box3D((3, 0, 0.5), (1, 1, 1))  # left face at x = 2.5
    assert box_distance(diamond, cube) == pytest.approx(2.5 - math.sqrt(2))
    assert box_distance(cube, diamond) == pytest.approx(2.5 - math.sqrt(2))


def test_directions_hand_cases(hand_scene):
    o = {x.category: x.box for x in hand_scene.objects}
    # standing by the bed (1,1) facing the table (4,1): sofa at (5.5,3.5) is 29.05 deg to the left
    a = egocentric_angle(o["bed"], o["table"], o["sofa"])
    assert a == pytest.approx(math.degrees(math.atan2(2.5, 4.5)))
    assert [direction_label(a, lv) for lv in ("easy", "medium", "hard")] == ["left", "left", "front-left"]
    # table (4,1) facing sofa (5.5,3.5): bed at (1,1) is 121.0 deg left -> back-left, still "left" for medium
    a = egocentric_angle(o["table"], o["sofa"], o["bed"])
    assert a == pytest.approx(math.degrees(math.atan2(7.5, -4.5)))
    assert [direction_label(a, lv) for lv in ("easy", "medium", "hard")] == ["left", "left", "back-left"]
    # sofa facing bed: tv at (2.5,3.8) is 34.8 deg right
    a = egocentric_angle(o["sofa"], o["bed"], o["tv"])
    assert a == pytest.approx(math.degrees(math.atan2(-8.85, 12.75)))
    assert direction_label(a, "hard") == "front-right"
    # behind: forward +y, target (0.5, -2): -165.96 deg
    b = signed_angle(np.array([0, 1]), np.array([0.5, -2]))
    assert b == pytest.approx(-(180 - math.degrees(math.atan2(0.5, 2))))
    assert direction_label(b, "medium") == "back" and direction_label(b, "hard") == "back-right"
    assert near_boundary(89.0, "hard", 5) and not near_boundary(60.0, "hard", 5)
    assert near_boundary(-131.0, "medium", 5) and not near_boundary(100.0, "medium", 5)


def test_turns():
    assert turn_label(signed_angle(np.array([1, 0]), np.array([1.5, 2.5]))) == "turn left"
    assert turn_label(signed_angle(np.array([1, 0]), np.array([0.2, -1]))) == "turn right"
    assert turn_label(signed_angle(np.array([1, 0]), np.array([-1, 0.2]))) == "turn back"


def test_stacking(hand_scene):
    o = {x.category: x.box for x in hand_scene.objects}
    assert stacked_on(o["lamp"], o["table"]) and not stacked_on(o["table"], o["lamp"])
    assert not stacked_on(o["lamp"], o["bed"])


def test_box_image_rect_hand_projection(level_pose):
    k = Intrinsics(100, 100, 50, 40, 100, 80)
    frame = Frame(0, 0.0, level_pose(0, 0, 0), k)
    # a cube 1 m wide centred 5 m ahead: x in [-0.5, 0.5] at depths 4.5..5.5 -> u in 50 +- 100*0.5/4.5
    rect = box_image_rect(Box3D((0, 5, 0), (1, 1, 1)), frame)
    assert rect == pytest.approx((50 - 100 / 9, 40 - 100 / 9, 50 + 100 / 9, 40 + 100 / 9))
    assert box_image_rect(Box3D((0, -5, 0), (1, 1, 1)), frame) is None  # behind the camera
