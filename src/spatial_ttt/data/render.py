"""Headless rasterisation of box scenes with moderngl on an EGL context (Mesa's llvmpipe on CPU), and video
writing with PyAV.

Why moderngl + EGL: it installs from PyPI as a wheel, is maintained, needs only Mesa's EGL/GL libraries
(Debian libegl1, libgl1-mesa-dri) and no display; llvmpipe draws a few hundred triangles at 640x480 in about a
millisecond on one core. Every frame yields a colour image and an instance-id image, so visibility and first
appearance come from the pixels actually shown in the video.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .scene import Box3D, Frame, Scene

_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos; in vec3 in_normal; in vec3 in_color; in int in_id;
out vec3 v_normal; out vec3 v_color; flat out int v_id;
void main() { gl_Position = mvp * vec4(in_pos, 1.0); v_normal = in_normal; v_color = in_color; v_id = in_id; }
"""
_FRAGMENT = """
#version 330
in vec3 v_normal; in vec3 v_color; flat in int v_id;
layout(location = 0) out vec4 f_color;
layout(location = 1) out vec4 f_id;
void main() {
    int code = v_id + 2;  // 0 = nothing drawn, 1 = shell; packed in 3 bytes of an RGBA8 target
    vec3 light = normalize(vec3(0.35, 0.55, 0.75));
    float shade = 0.45 + 0.55 * max(dot(normalize(v_normal), light), 0.0) + 0.1 * abs(v_normal.x);
    f_color = vec4(v_color * min(shade, 1.0), 1.0);
    f_id = vec4(float(code & 255), float((code >> 8) & 255), float((code >> 16) & 255), 255.0) / 255.0;
}
"""
BACKGROUND = (0.75, 0.8, 0.85)
NO_OBJECT = -1  # id of pixels showing the shell (floor, walls) or nothing

# faces of a box as corner indices (see Box3D.corners: 0-3 bottom ccw, 4-7 top), counter-clockwise from outside
_FACES = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]


def _box_triangles(box: Box3D, color: tuple[int, int, int], obj_id: int) -> np.ndarray:
    """Interleaved vertex rows (pos3, normal3, color3, id) for the 12 triangles of a box."""
    c = box.corners()
    rows = []
    col = np.asarray(color, dtype=np.float32) / 255.0
    for face in _FACES:
        p = c[list(face)]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        n = n / np.linalg.norm(n)
        for tri in ((0, 1, 2), (0, 2, 3)):
            for k in tri:
                rows.append([*p[k], *n, *col, obj_id])
    return np.asarray(rows, dtype=np.float64)


def projection_from_intrinsics(frame: Frame, near: float = 0.05, far: float = 100.0) -> np.ndarray:
    """OpenGL clip matrix from OpenCV intrinsics; +0.5 moves OpenCV's integer pixel centres to GL's."""
    k = frame.intrinsics
    w, h = k.width, k.height
    cx, cy = k.cx + 0.5, k.cy + 0.5
    return np.array([
        [2 * k.fx / w, 0, 1 - 2 * cx / w, 0],
        [0, 2 * k.fy / h, 2 * cy / h - 1, 0],
        [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
        [0, 0, -1, 0],
    ])


def view_matrix(pose: np.ndarray) -> np.ndarray:
    """World -> OpenGL camera (x right, y up, z backward) from an OpenCV camera-to-world pose."""
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    return flip @ np.linalg.inv(pose)


class BoxRenderer:
    """Renders colour and instance-id images of coloured boxes; one GL context, reused across frames."""

    def __init__(self, width: int, height: int):
        import moderngl

        try:
            self.ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as e:  # the message of a missing libEGL is cryptic; say what to install
            raise RuntimeError(
                "could not create a headless OpenGL context (EGL). Install Mesa's EGL and GL drivers, "
                f"e.g. `apt-get install libegl1 libgl1-mesa-dri` on Debian/Ubuntu. Cause: {e}") from e
        self.size = (width, height)
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.color_tex = self.ctx.renderbuffer(self.size, 4)
        # ids go to an RGBA8 target: glClear on integer targets is undefined, bytes survive exactly
        self.id_tex = self.ctx.renderbuffer(self.size, 4)
        self.depth = self.ctx.depth_renderbuffer(self.size)
        self.fbo = self.ctx.framebuffer([self.color_tex, self.id_tex], self.depth)
        self.vao = None
        self.vbo = None

    def set_boxes(self, items: Iterable[tuple[Box3D, tuple[int, int, int], int]]) -> None:
        """Upload the geometry: (box, rgb colour, object id or NO_OBJECT) for every box."""
        rows = np.concatenate([_box_triangles(b, c, i) for b, c, i in items])
        verts = np.zeros(len(rows), dtype=[("p", "f4", 3), ("n", "f4", 3), ("c", "f4", 3), ("i", "i4")])
        verts["p"], verts["n"], verts["c"], verts["i"] = rows[:, :3], rows[:, 3:6], rows[:, 6:9], rows[:, 9]
        if self.vbo is not None:
            self.vao.release()
            self.vbo.release()
        self.vbo = self.ctx.buffer(verts.tobytes())
        self.vao = self.ctx.vertex_array(
            self.prog, [(self.vbo, "3f 3f 3f 1i", "in_pos", "in_normal", "in_color", "in_id")])

    def render(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """(rgb uint8 [H, W, 3], ids int32 [H, W]) for a frame; row 0 is the top of the image."""
        if (frame.intrinsics.width, frame.intrinsics.height) != self.size:
            raise ValueError(f"frame {frame.index} is {frame.intrinsics.width}x{frame.intrinsics.height}, "
                             f"renderer is {self.size[0]}x{self.size[1]}")
        self.fbo.use()
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        mvp = projection_from_intrinsics(frame) @ view_matrix(frame.pose)
        self.prog["mvp"].write(mvp.T.astype("f4").tobytes())  # GL expects column-major
        self.vao.render()
        w, h = self.size
        rgb = np.frombuffer(self.fbo.read(components=3, attachment=0), dtype=np.uint8).reshape(h, w, 3)[::-1]
        code = np.frombuffer(self.fbo.read(components=4, attachment=1), dtype=np.uint8).reshape(h, w, 4)[::-1]
        c = code.astype(np.int32)
        packed = c[..., 0] | (c[..., 1] << 8) | (c[..., 2] << 16)
        rgb = rgb.copy()
        rgb[packed == 0] = np.round(np.array(BACKGROUND) * 255).astype(np.uint8)
        return rgb, np.maximum(packed - 2, NO_OBJECT)

    def release(self) -> None:
        self.ctx.release()

    def __enter__(self) -> "BoxRenderer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def category_color(category: str, obj_id: int, palette: dict[str, tuple[int, int, int]] | None = None) -> tuple[int, int, int]:
    """Colour of an object: its category's palette colour (or one hashed from the name), shaded a little per
    instance so neighbouring objects of one category stay distinguishable."""
    if palette and category in palette:
        base = np.array(palette[category], dtype=float)
    else:
        base = np.frombuffer(hashlib.sha256(category.encode()).digest()[:3], dtype=np.uint8).astype(float)
    jitter = ((obj_id * 37) % 7 - 3) * 6.0
    return tuple(int(v) for v in np.clip(base + jitter, 0, 255))


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float, codec: str = "libx264") -> int:
    """Encode RGB frames (H, W, 3 uint8, even H and W) to an mp4 in yuv420p; atomic (temp file, then rename).

    Returns the number of frames written.
    """
    import av
    from fractions import Fraction

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    n = 0
    try:
        with av.open(tmp, mode="w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                # mbtree=0: x264's macroblock-tree rate control gave different bytes for the same frames from run
                # to run on small frames (96x64: decoded pixels off by up to 37/255); without it encoding is exact.
                stream.options = {"crf": "20", "preset": "veryfast", "x264-params": "mbtree=0"}
            for rgb in frames:
                if n == 0:
                    h, w = rgb.shape[:2]
                    if h % 2 or w % 2:
                        raise ValueError(f"{path}: yuv420p needs even frame sizes, got {w}x{h}")
                    stream.width, stream.height = w, h
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                    container.mux(packet)
                n += 1
            if n == 0:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n


def read_video(path: str | Path) -> list[np.ndarray]:
    """Decode every frame of a video to RGB arrays (used by tests and for checking outputs)."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def render_scene(scene: Scene, shell: list[tuple[Box3D, tuple[int, int, int]]], video_path: str | Path,
                 palette: dict[str, tuple[int, int, int]] | None = None, min_pixels: int = 30,
                 on_frame: Callable[[int], None] | None = None) -> Scene:
    """Render every frame of scene to video_path and return the scene with per-frame visibility filled in:
    an object counts as visible in a frame when at least min_pixels of its pixels are on screen."""
    if not scene.frames:
        raise ValueError(f"{scene.source}: scene has no camera frames to render")
    k = scene.frames[0].intrinsics
    visible: list[tuple[int, ...]] = []

    def frames() -> Iterable[np.ndarray]:
        with BoxRenderer(k.width, k.height) as r:
            r.set_boxes([(b, c, NO_OBJECT) for b, c in shell]
                        + [(o.box, category_color(o.category, o.id, palette), o.id) for o in scene.objects])
            for f in scene.frames:
                rgb, ids = r.render(f)
                counts = np.bincount(ids[ids >= 0].ravel(), minlength=1)
                visible.append(tuple(int(i) for i in np.nonzero(counts >= min_pixels)[0]))
                if on_frame is not None:
                    on_frame(f.index)
                yield rgb

    write_video(frames(), video_path, scene.fps)
    scene.frames = [replace(f, visible=v) for f, v in zip(scene.frames, visible)]
    return scene
