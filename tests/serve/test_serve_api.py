"""The HTTP API against a real uvicorn server on 127.0.0.1: sessions, answers, bad input, auth, limits, concurrency."""

from __future__ import annotations

import io
import json
import threading
import time

import httpx
import numpy as np
import torch
from PIL import Image

from spatial_ttt.serve.frames import decode_image

from .conftest import SIZE, ask, frame_png, push, write_webm

QUESTION = "What is on the table?"


def reference_answer(pipeline, indices: list[int], chunk: int = 4, tokens: int = 6) -> str:
    """The same frames observed in the server's chunks (full chunks, then the complete pairs before a question)."""
    session = pipeline.stream()
    frames = [decode_image(frame_png(i), SIZE) for i in indices]
    usable = len(frames) // 2 * 2
    for start in range(0, usable, chunk):
        stop = min(start + chunk, usable)
        session.observe(torch.from_numpy(np.stack(frames[start:stop])), [float(i) for i in indices[start:stop]])
    return session.ask(QUESTION, max_new_tokens=tokens, stop_token_ids=pipeline.stop_token_ids)


def sse_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def test_session_lifecycle(start_server, pipeline):
    expected = reference_answer(pipeline, list(range(6)))
    server = start_server()
    c = server.client
    created = c.post("/api/sessions", json={"id": "kitchen", "fps": 2, "chunk_frames": 4, "size": [64, 64]})
    assert created.status_code == 201
    assert created.json()["fps"] == 2 and created.json()["frames"] == 0
    for i in range(6):
        reply = push(c, "kitchen", i)
        assert reply.status_code == 200, reply.text
    info = reply.json()
    assert (info["frames"], info["pending"], info["kept"]) == (4, 2, 1)  # one chunk observed, two frames waiting

    response = c.post("/api/sessions/kitchen/ask", json={"question": QUESTION, "max_new_tokens": 6})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert [name for name, _ in events[:-1]] == ["token"] * (len(events) - 1) and events[-1][0] == "done"
    done = events[-1][1]
    assert done["answer"] == expected and done["frames"] == 6  # the pending pair was observed first
    assert "".join(data["token"] for _, data in events[:-1]).strip() == expected  # pieces of the raw decode
    assert ask(c, "kitchen") == expected  # asking left the memory unchanged

    listed = c.get("/api/sessions").json()
    (entry,) = listed["sessions"]
    assert entry["memory_bytes"] > 0 and listed["memory_bytes"] == entry["memory_bytes"]

    copy = c.post("/api/sessions/kitchen/snapshot", json={"id": "kitchen-copy"})
    assert copy.status_code == 201 and copy.json()["frames"] == 6
    push(c, "kitchen", 6)
    push(c, "kitchen", 7)
    assert ask(c, "kitchen") != expected  # the original moved on ...
    assert ask(c, "kitchen-copy") == expected  # ... the snapshot did not

    reset = c.post("/api/sessions/kitchen/reset").json()
    assert (reset["frames"], reset["pending"], reset["last_t"]) == (0, 0, None)
    assert ask(c, "kitchen") == reference_answer(pipeline, [])
    assert push(c, "kitchen", 0).status_code == 200  # the clock starts again

    assert c.delete("/api/sessions/kitchen").json() == {"deleted": "kitchen"}
    assert c.get("/api/sessions/kitchen").status_code == 404
    assert [s["id"] for s in c.get("/api/sessions").json()["sessions"]] == ["kitchen-copy"]


def test_fps_keeps_frames_at_the_session_rate(start_server):
    c = start_server().client
    c.post("/api/sessions", json={"id": "s", "fps": 1})
    # slots at 0, 1, 2, 3 s: a frame takes the nearest slot if it is free
    kept = [push(c, "s", i, t=t).json()["kept"] for i, t in enumerate([0.0, 0.4, 0.6, 1.45, 1.55, 3.0, 3.2])]
    assert kept == [1, 0, 1, 0, 1, 1, 0]
    assert c.get("/api/sessions/s").json()["dropped"] == 3


def test_bad_input_gets_a_4xx_naming_the_problem(start_server, pipeline):
    server = start_server(max_upload_bytes=50_000, max_new_tokens=8)
    c = server.client
    c.post("/api/sessions", json={"id": "s"})
    for i in range(4):
        push(c, "s", i)
    before = ask(c, "s")

    def detail(response: httpx.Response, status: int) -> str:
        assert response.status_code == status, response.text
        return response.json()["detail"]

    url = "/api/sessions/s/frames"
    assert detail(c.post(url, params={"t": 9}, content=b"not an image"), 400) == (
        "the frame is not a decodable JPEG or PNG image (12 bytes no image decoder recognises)")
    assert "not a decodable JPEG or PNG image" in detail(c.post(url, params={"t": 9}, content=frame_png(9)[:300]), 400)
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    assert detail(c.post(url, params={"t": 9}, content=gif.getvalue()), 415) == "the frame is a GIF image; send JPEG or PNG"
    assert detail(push(c, "s", 9, t=2.0), 409) == (
        "frames out of order: t=2 s is not after the previous frame (t=3 s) of session s")
    assert detail(c.post(url, params={"t": "nan"}, content=frame_png(9)), 422) == (
        "t must be a finite number of seconds >= 0, got nan")
    assert detail(c.post(url, params={"t": 9}, content=b"x" * 60_000), 413) == (
        "the request body is 60000 bytes, over the upload limit of 50000 bytes (--max-upload-mb)")
    chunked = c.post(url, params={"t": 9}, content=iter([b"x" * 30_000, b"x" * 30_000]))  # no Content-Length
    assert detail(chunked, 413) == "the frame is over the upload limit of 50000 bytes (--max-upload-mb)"
    assert detail(c.post("/api/sessions/s/ask", json={"question": "x" * 60_000}), 413).startswith(
        "the request body is 600")
    assert detail(push(c, "nope", 9), 404) == "unknown session 'nope'"
    assert detail(c.post("/api/sessions/s/video", params={"start": 9}, content=b"\x00" * 1000), 400).startswith(
        "the video chunk cannot be decoded")
    assert detail(c.post("/api/sessions", json={"chunk_frames": 3}), 422) == (
        "chunk_frames must be an even number from 2 to 256, got 3")
    assert detail(c.post("/api/sessions", json={"size": [64, 50]}), 422).startswith("size must be [height, width]")
    assert detail(c.post("/api/sessions", json={"id": "s"}), 409) == "session 's' already exists"
    assert detail(c.post("/api/sessions", json={"id": "../etc"}), 422).startswith("session id '../etc'")
    assert detail(c.post("/api/sessions/s/ask", json={"question": "  "}), 422) == "the question is empty"
    assert detail(c.post("/api/sessions/s/ask", json={"question": "q", "max_new_tokens": 9}), 422) == (
        "max_new_tokens 9 is over the server's limit of 8 (--max-new-tokens)")
    assert detail(c.post("/api/sessions/import", content=b"junk"), 400).startswith("not an exported session")
    # nothing above changed the session or stopped the server
    assert c.get("/api/sessions/s").json()["frames"] == 4
    assert ask(c, "s") == before


def test_bearer_token(start_server):
    server = start_server(token="s3cret")
    c = server.client
    refused = c.get("/api/sessions")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json()["detail"] == "missing or wrong bearer token: send 'Authorization: Bearer <token>'"
    assert c.get("/api/sessions", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.post("/api/sessions", json={}, headers={"Authorization": "Bearer s3cret"}).status_code == 201
    assert c.get("/").status_code == 200 and "spatial-ttt" in c.get("/").text  # the page holds no data


def test_concurrent_sessions_stay_apart(start_server, pipeline):
    plans = {f"cam{k}": [100 * k + i for i in range(8)] for k in range(3)}
    expected = {name: reference_answer(pipeline, frames) for name, frames in plans.items()}
    server = start_server()
    answers, errors = {}, []

    def client(name: str, frames: list[int]) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as c:
                assert c.post("/api/sessions", json={"id": name}).status_code == 201
                for t, index in enumerate(frames):
                    assert c.post(f"/api/sessions/{name}/frames", params={"t": index},
                                  content=frame_png(index)).status_code == 200
                answers[name] = ask(c, name)
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=client, args=item) for item in plans.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert answers == expected
    assert len(set(expected.values())) == 3  # the sessions saw different frames and say different things


def test_memory_limits(start_server, pipeline):
    server = start_server()
    c = server.client
    c.post("/api/sessions", json={"id": "a"})
    for i in range(4):
        push(c, "a", i)
    answer_a = ask(c, "a")
    one = c.get("/api/sessions/a").json()["memory_bytes"]

    server.manager.settings.max_session_bytes = one + 1000  # the next frame would pass it
    refused = push(c, "a", 4)
    assert refused.status_code == 409
    assert "over the per-session limit" in refused.json()["detail"]
    server.manager.settings.max_session_bytes = 1 << 40

    server.manager.settings.max_total_bytes = int(one * 1.5)  # room for one session of this size
    c.post("/api/sessions", json={"id": "b"})
    for i in range(4):
        assert push(c, "b", 10 + i).status_code == 200
    ask(c, "b")  # runs after b's chunk (one model queue): the limit has been enforced by then
    states = {s["id"]: s["in_memory"] for s in c.get("/api/sessions").json()["sessions"]}
    assert states == {"a": False, "b": True}  # a, idle, was parked on disk to make room
    assert ask(c, "a") == answer_a  # and comes back on use (b goes to disk)
    assert {s["id"]: s["in_memory"] for s in c.get("/api/sessions").json()["sessions"]} == {"a": True, "b": False}

    server.manager.settings.max_total_bytes = one // 2  # not even one session fits
    refused = push(c, "a", 4)
    assert refused.status_code == 429
    assert refused.json()["detail"].startswith("server memory limit: sessions in memory hold")


def test_idle_sessions_are_parked_and_restored(start_server, tmp_path):
    server = start_server(idle_seconds=0.3)
    c = server.client
    c.post("/api/sessions", json={"id": "s"})
    for i in range(5):
        push(c, "s", i)
    before = ask(c, "s")
    deadline = time.monotonic() + 10
    while c.get("/api/sessions/s").json()["in_memory"]:
        assert time.monotonic() < deadline, "the idle session was not parked"
        time.sleep(0.1)
    info = c.get("/api/sessions/s").json()
    assert (info["memory_bytes"], info["frames"], info["pending"]) == (0, 4, 1)
    assert (tmp_path / "sessions/s/stream.safetensors").stat().st_size == info["disk_bytes"] > 0
    assert ask(c, "s") == before
    assert c.get("/api/sessions/s").json()["frames"] == 4


def test_sessions_survive_a_restart(start_server, tmp_path, pipeline):
    first = start_server()
    c = first.client
    c.post("/api/sessions", json={"id": "s", "fps": 2})
    for i in range(5):
        push(c, "s", i)
    before = ask(c, "s")
    first.stop()  # graceful: every session is saved

    second = start_server(tmp_path / "sessions")
    c = second.client
    (info,) = c.get("/api/sessions").json()["sessions"]
    assert (info["id"], info["in_memory"], info["frames"], info["pending"], info["last_t"], info["fps"]) == (
        "s", False, 4, 1, 4.0, 2.0)
    assert ask(c, "s") == before
    assert push(c, "s", 9, t=3.5).status_code == 409  # the clock came back too
    assert push(c, "s", 5).status_code == 200
    assert ask(c, "s") == reference_answer(pipeline, list(range(6)))


def test_video_chunks(start_server, tmp_path):
    c = start_server().client
    c.post("/api/sessions", json={"id": "s", "fps": 2})
    chunk = write_webm(tmp_path / "chunk.webm", seconds=2.0, rate=10, size=64).read_bytes()
    first = c.post("/api/sessions/s/video", params={"start": 0}, content=chunk).json()
    assert (first["received"], first["kept"], first["last_t"]) == (4, 4, 1.5)  # 2 s at 2 frames/s
    second = c.post("/api/sessions/s/video", params={"start": 2}, content=chunk).json()
    assert (second["frames"], second["pending"], second["last_t"]) == (8, 0, 3.5)
    late = c.post("/api/sessions/s/video", params={"start": 3}, content=chunk)
    assert (late.status_code, late.json()["detail"]) == (
        409, "frames out of order: t=3 s is not after the previous frame (t=3.5 s) of session s")


def test_on_token_sees_every_decoded_token(pipeline):
    """The hook the SSE answers stand on: StreamSession.ask(..., on_token=f) passes f to model.decode."""
    session = pipeline.stream()
    frames = np.stack([decode_image(frame_png(i), SIZE) for i in range(4)])
    session.observe(torch.from_numpy(frames), [0.0, 1.0, 2.0, 3.0])
    seen: list[int] = []
    answer = session.ask(QUESTION, max_new_tokens=6, on_token=lambda token: seen.append(int(token[0])))
    assert len(seen) == 6 or seen[-1] in pipeline.stop_token_ids
    assert pipeline.processor.decode(seen).strip() == answer
    assert session.ask(QUESTION, max_new_tokens=6) == answer  # the hook changed nothing
