"""A hand-built scene whose distances, directions, counts and appearance order are computed by hand in tests."""

import numpy as np
import pytest

from spatial_ttt.data.scene import Box3D, Frame, Intrinsics, Room, Scene, SceneObject, validate_scene


def level_pose(x: float, y: float, z: float) -> np.ndarray:
    """Camera at (x, y, z) looking along +y, level (OpenCV axes: right=+x, down=-z, forward=+y)."""
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = (1, 0, 0), (0, 0, -1), (0, 1, 0), (x, y, z)
    return pose


@pytest.fixture(name="level_pose")
def level_pose_fixture():
    return level_pose


@pytest.fixture
def hand_scene() -> Scene:
    # room 6 m x 4 m (24 m^2); boxes given as (center, size), all yaw 0 so extents are easy to read:
    objects = [
        SceneObject(0, "bed", Box3D((1, 1, 0.25), (2, 1, 0.5))),          # x 0..2,    y 0.5..1.5, z 0..0.5
        SceneObject(1, "table", Box3D((4, 1, 0.375), (1, 1, 0.75))),      # x 3.5..4.5, y 0.5..1.5, z 0..0.75
        SceneObject(2, "chair", Box3D((4, 3, 0.5), (0.5, 0.5, 1.0))),     # x 3.75..4.25, y 2.75..3.25
        SceneObject(3, "chair", Box3D((1, 3, 0.5), (0.5, 0.5, 1.0))),     # x 0.75..1.25, y 2.75..3.25
        SceneObject(4, "lamp", Box3D((4, 1, 0.95), (0.2, 0.2, 0.4))),     # on the table: z 0.75..1.15
        SceneObject(5, "sofa", Box3D((5.5, 3.5, 0.4), (1.0, 0.8, 0.8))),  # x 5..6, y 3.1..3.9
        SceneObject(6, "tv", Box3D((2.5, 3.8, 1.2), (1.0, 0.1, 0.6))),    # x 2..3, y 3.75..3.85, z 0.9..1.5
    ]
    k = Intrinsics(100, 100, 63.5, 47.5, 128, 96)
    visible = [(0,), (0, 1), (1, 4), (5,), (2, 3, 6)]  # first seen: bed 0 s, table .5, lamp 1, sofa 1.5, chairs+tv 2
    frames = [Frame(i, 0.5 * i, level_pose(3, -1, 1.5), k, v) for i, v in enumerate(visible)]
    room = Room(((0, 0), (6, 0), (6, 4), (0, 4)), 2.6)
    return validate_scene(Scene("hand", [room], objects, frames, fps=2.0, source="hand.json"))
