"""Fixtures for the serving tests: the tiny model, real uvicorn servers on 127.0.0.1, and small frames."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from spatial_ttt.pipeline import SpatialTTTPipeline, make_tiny_model_folder
from spatial_ttt.serve import ServeSettings, create_app

SIZE = (64, 64)  # 2x2 merged tokens per frame pair: fast


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs its tiny models on one thread (tests/conftest.py's one_thread)."""
    yield


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    return make_tiny_model_folder(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="session")
def pipeline(model_dir) -> SpatialTTTPipeline:
    return SpatialTTTPipeline.from_pretrained(model_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real uvicorn server on 127.0.0.1 in a thread; ``stop`` shuts it down as Ctrl-C would (sessions saved)."""

    def __init__(self, pipeline: SpatialTTTPipeline, state_dir: Path, **settings) -> None:
        import uvicorn

        settings = dict(dict(fps=1.0, chunk_frames=4, size=SIZE), **settings)
        self.app = create_app(pipeline, ServeSettings(state_dir=state_dir, **settings))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    @property
    def manager(self):
        return self.app.state.manager

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


@pytest.fixture
def start_server(pipeline, tmp_path):
    """start_server(state_dir=None, **ServeSettings) -> a running Server, stopped after the test."""
    servers = []

    def start(state_dir: Path | None = None, **settings) -> Server:
        server = Server(pipeline, state_dir or tmp_path / "sessions", **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()


def frame_png(index: int, size: tuple[int, int] = SIZE) -> bytes:
    """A deterministic noise frame as PNG bytes."""
    pixels = np.random.default_rng(index).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def push(client: httpx.Client, session: str, index: int, t: float | None = None) -> httpx.Response:
    return client.post(f"/api/sessions/{session}/frames", params={"t": index if t is None else t},
                       content=frame_png(index), headers={"Content-Type": "image/png"})


def ask(client: httpx.Client, session: str, question: str = "What is on the table?", tokens: int = 6) -> str:
    response = client.post(f"/api/sessions/{session}/ask", json={"question": question, "max_new_tokens": tokens, "stream": False})
    assert response.status_code == 200, response.text
    return response.json()["answer"]


def write_webm(path: Path, seconds: float = 4.0, rate: int = 10, size: int = 128) -> Path:
    """A small VP8 video (every Chromium build plays VP8): a bright square moving across a dark room."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libvpx", rate=rate)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * rate)):
            frame = np.full((size, size, 3), 30, dtype=np.uint8)
            x = i * (size - 32) // int(seconds * rate)
            frame[48:80, x:x + 32] = (230, 200, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
