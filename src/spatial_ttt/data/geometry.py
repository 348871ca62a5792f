"""Geometry the generators share: closest-point box distances, egocentric directions, projection, stacking."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .scene import Box3D, Frame, Scene


# ---------------------------------------------------------------- distances


def _polygons_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test for two convex polygons (n, 2)."""
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        for ex, ey in edges:
            axis = np.array([-ey, ex])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() - 1e-12 or pb.max() < pa.min() - 1e-12:
                return False
    return True


def _point_segment_distance(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> float:
    d = s1 - s0
    t = float(np.clip(np.dot(p - s0, d) / max(np.dot(d, d), 1e-18), 0.0, 1.0))
    return float(np.linalg.norm(p - (s0 + t * d)))


def polygon_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Closest distance between two convex polygons (0 when they overlap)."""
    if _polygons_overlap(a, b):
        return 0.0
    best = math.inf
    for p, q in ((a, b), (b, a)):
        for v in p:
            for i in range(len(q)):
                best = min(best, _point_segment_distance(v, q[i], q[(i + 1) % len(q)]))
    return best


def box_distance(a: Box3D, b: Box3D) -> float:
    """Exact closest-point distance between two yaw-only boxes (VSI-Bench 'measuring from the closest point').

    A yaw-only box is (footprint polygon) x (z interval), so the distance between two such sets splits exactly
    into sqrt(d_floor^2 + d_z^2); VSI-Bench approximates the same quantity by sampling points in the boxes.
    """
    d_xy = polygon_distance(a.footprint(), b.footprint())
    d_z = max(0.0, a.z_min - b.z_max, b.z_min - a.z_max)
    return math.hypot(d_xy, d_z)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull (k, 2) of floor points (n, 2), counter-clockwise, collinear points dropped (monotone chain)."""
    pts = [tuple(p) for p in np.unique(np.asarray(points, dtype=float), axis=0).tolist()]  # sorted by x, then y
    if len(pts) < 3:
        return np.array(pts, dtype=float).reshape(-1, 2)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for x, y in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (y - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (x - out[-2][0])) <= 0:
                out.pop()
            out.append((x, y))
        return out

    return np.array(half(pts)[:-1] + half(pts[::-1])[:-1])


# ---------------------------------------------------------------- directions


def signed_angle(forward_xy: np.ndarray, target_xy: np.ndarray) -> float:
    """Angle in degrees from forward to target on the floor plane, counter-clockwise (to the left) positive."""
    f = np.asarray(forward_xy, dtype=float)
    t = np.asarray(target_xy, dtype=float)
    return math.degrees(math.atan2(f[0] * t[1] - f[1] * t[0], f[0] * t[0] + f[1] * t[1]))


def egocentric_angle(stand: Box3D, face: Box3D, query: Box3D) -> float:
    """Angle of query as seen by someone standing at stand's centre and facing face's centre (left positive)."""
    s = np.array(stand.center[:2])
    return signed_angle(np.array(face.center[:2]) - s, np.array(query.center[:2]) - s)


# VSI-Bench direction difficulty levels -> (labels, boundary angles in degrees used for ambiguity checks).
DIRECTION_LEVELS: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "easy": (("left", "right"), (0.0, 180.0)),
    "medium": (("left", "right", "back"), (0.0, 135.0)),
    "hard": (("front-left", "front-right", "back-left", "back-right"), (0.0, 90.0, 180.0)),
}


def direction_label(angle: float, level: str) -> str:
    """Label of an egocentric angle for a VSI-Bench difficulty level (left-positive angle in degrees).

    easy: left/right of the facing line; medium: back when |angle| >= 135 (VSI-Bench's rule), else left/right;
    hard: quadrant of the plane with the viewer at the origin facing +y.
    """
    if level == "easy":
        return "left" if angle > 0 else "right"
    if level == "medium":
        if abs(angle) >= 135.0:
            return "back"
        return "left" if angle > 0 else "right"
    if level == "hard":
        front = "front" if abs(angle) < 90.0 else "back"
        return f"{front}-{'left' if angle > 0 else 'right'}"
    raise ValueError(f"unknown direction level {level!r}; expected one of {sorted(DIRECTION_LEVELS)}")


def near_boundary(angle: float, level: str, margin: float) -> bool:
    """True when the angle is within margin degrees of a label boundary (the answer would be ambiguous)."""
    return any(abs(abs(angle) - b) < margin for b in DIRECTION_LEVELS[level][1])


def turn_label(angle: float) -> str:
    """Route-plan turn for a heading change (left positive): back if |angle| >= 135, else left/right."""
    if abs(angle) >= 135.0:
        return "turn back"
    return "turn left" if angle > 0 else "turn right"


def viewpoint_coords(point_xy: np.ndarray, origin_xy: np.ndarray, forward_xy: np.ndarray) -> tuple[float, float]:
    """(right, front) coordinates of a floor point for a viewer at origin looking along forward."""
    f = np.asarray(forward_xy, dtype=float)
    f = f / np.linalg.norm(f)
    right = np.array([f[1], -f[0]])
    d = np.asarray(point_xy, dtype=float) - np.asarray(origin_xy, dtype=float)
    return float(d @ right), float(d @ f)


def camera_floor_view(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Camera position and viewing direction projected to the floor plane (both (2,))."""
    pos = frame.pose[:2, 3]
    fwd = frame.pose[:2, 2]  # camera z axis in world coordinates
    if np.linalg.norm(fwd) < 1e-6:  # looking straight down: use the image's up direction instead
        fwd = -frame.pose[:2, 1]
    return pos.copy(), fwd / np.linalg.norm(fwd)


# ---------------------------------------------------------------- vertical relations


def stacked_on(top: Box3D, bottom: Box3D, tol: float = 0.05) -> bool:
    """top rests on bottom: top's base within tol of bottom's top face and their footprints overlap."""
    return abs(top.z_min - bottom.z_max) <= tol and _polygons_overlap(top.footprint(), bottom.footprint())


# ---------------------------------------------------------------- projection

_BOX_EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


def world_to_camera(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """World points (N, 3) to OpenCV camera coordinates with a camera-to-world pose."""
    rot, t = pose[:3, :3], pose[:3, 3]
    return (np.asarray(points, dtype=float) - t) @ rot


def box_image_rect(box: Box3D, frame: Frame, near: float = 0.05) -> tuple[float, float, float, float] | None:
    """Tight pixel rectangle (u0, v0, u1, v1) of the box's projection, clipped to the image; None if unseen.

    Edges crossing the near plane are cut there, so a box that surrounds the camera plane is still exact.
    """
    cam = world_to_camera(box.corners(), frame.pose)
    pts = [c for c in cam if c[2] >= near]
    for i, j in _BOX_EDGES:
        a, b = cam[i], cam[j]
        if (a[2] - near) * (b[2] - near) < 0:
            t = (near - a[2]) / (b[2] - a[2])
            pts.append(a + t * (b - a))
    if not pts:
        return None
    p = np.array(pts)
    k = frame.intrinsics
    u = k.fx * p[:, 0] / p[:, 2] + k.cx
    v = k.fy * p[:, 1] / p[:, 2] + k.cy
    # pixel i covers [i - 0.5, i + 0.5] in OpenCV's convention
    u0, u1 = max(u.min(), -0.5), min(u.max(), k.width - 0.5)
    v0, v1 = max(v.min(), -0.5), min(v.max(), k.height - 0.5)
    if u0 >= u1 or v0 >= v1:
        return None
    return float(u0), float(v0), float(u1), float(v1)


def frustum_visibility(scene: Scene) -> Scene:
    """Fill missing per-frame visibility by a frustum test (no occlusion); used for annotations without it."""
    frames = []
    for f in scene.frames:
        if f.visible is None:
            vis = tuple(o.id for o in scene.objects if box_image_rect(o.box, f) is not None)
            f = replace(f, visible=vis)
        frames.append(f)
    scene.frames = frames
    return scene
