"""The web page in real headless Chromium (Debian's, driven by Playwright): a video file in, an answer out."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from .conftest import ask

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


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


def test_page_pushes_a_video_and_shows_the_answer(start_server, tmp_path):
    from playwright.sync_api import sync_playwright

    server = start_server()
    video = write_webm(tmp_path / "room.webm")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server.url + "/")
            page.fill("#fps", "4")
            page.fill("#chunk", "4")
            page.fill("#size", "64x64")
            page.set_input_files("#file", str(video))
            page.click("#start")
            page.wait_for_function("Number(document.getElementById('frames').textContent) >= 6", timeout=20_000)
            page.click("#pause")
            session = page.text_content("#session-id")
            sent = int(page.text_content("#frames"))
            assert float(page.text_content("#rate")) > 0
            assert page.text_content("#memory") != "0.00 MB"

            page.fill("#question", "Where did the yellow box go?")
            page.fill("#max-tokens", "6")
            page.click("#ask")
            page.wait_for_selector("#answers li.done", timeout=20_000)
            shown = page.text_content("#answers li.done .answer")
            assert page.locator("#timeline .mark").count() == 1
            assert not errors
        finally:
            browser.close()
    info = server.client.get(f"/api/sessions/{session}").json()
    assert info["frames"] + info["pending"] + info["dropped"] == sent and sent >= 6
    assert info["last_t"] > 0  # timestamps came from the video's clock
    assert shown == ask(server.client, session, "Where did the yellow box go?", 6)  # the page showed the real answer
