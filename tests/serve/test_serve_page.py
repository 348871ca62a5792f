"""The web page in real headless Chromium (Debian's, driven by Playwright): a video file in, an answer out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import ask, write_webm

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


def test_page_pushes_a_video_and_shows_the_answer(start_server, tmp_path):
    from playwright.sync_api import sync_playwright

    server = start_server(token="s3cret")
    server.client.headers["Authorization"] = "Bearer s3cret"
    video = write_webm(tmp_path / "room.webm")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--autoplay-policy=no-user-gesture-required",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",  # a test-pattern webcam
        ])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(server.url + "/")
            page.fill("#token", "s3cret")
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

            camera = browser.new_page()  # the webcam: frames timed by the page's clock
            camera.on("pageerror", lambda err: errors.append(str(err)))
            camera.goto(server.url + "/")
            camera.fill("#token", "s3cret")
            camera.fill("#fps", "4")
            camera.fill("#size", "64x64")
            camera.click("#webcam")
            camera.wait_for_selector("#start:not([disabled])")
            camera.click("#start")
            camera.wait_for_function("Number(document.getElementById('frames').textContent) >= 4", timeout=20_000)
            camera.click("#pause")
            webcam_session = camera.text_content("#session-id")
            webcam_sent = int(camera.text_content("#frames"))
            assert not errors and camera.text_content("#error") == ""
        finally:
            browser.close()
    info = server.client.get(f"/api/sessions/{session}").json()
    assert info["frames"] + info["pending"] + info["dropped"] == sent and sent >= 6
    assert info["last_t"] > 0  # timestamps came from the video's clock
    assert shown == ask(server.client, session, "Where did the yellow box go?", 6)  # the page showed the real answer
    webcam = server.client.get(f"/api/sessions/{webcam_session}").json()
    assert webcam["frames"] + webcam["pending"] + webcam["dropped"] == webcam_sent
    assert 0 < webcam["last_t"] < 30
