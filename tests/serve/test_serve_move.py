"""A session moving from one running server to another (the multi-replica plan's unit of work: the saved session)."""

from __future__ import annotations

import io
import tarfile

from spatial_ttt.pipeline import SpatialTTTPipeline, make_tiny_model_folder

from .conftest import Server, ask, push


def test_a_session_moves_between_running_servers(start_server, tmp_path):
    a, b = start_server(tmp_path / "a"), start_server(tmp_path / "b")
    a.client.post("/api/sessions", json={"id": "walk", "fps": 2})
    for i in range(7):
        push(a.client, "walk", i, t=i / 2)
    before = ask(a.client, "walk")

    exported = a.client.get("/api/sessions/walk/export")
    assert exported.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(exported.content)) as tar:
        assert sorted(tar.getnames()) == ["pending.npy", "session.json", "stream.safetensors"]  # 1 frame waits
    imported = b.client.post("/api/sessions/import", content=exported.content)
    assert imported.status_code == 201, imported.text
    info = imported.json()
    assert (info["id"], info["frames"], info["pending"], info["last_t"], info["fps"]) == ("walk", 6, 1, 3.0, 2.0)
    assert ask(b.client, "walk") == before

    for i in range(7, 10):  # both copies go on alike: same memory, clock and pending frames
        assert push(a.client, "walk", i, t=i / 2).status_code == push(b.client, "walk", i, t=i / 2).status_code == 200
    assert ask(b.client, "walk") == ask(a.client, "walk") != before
    assert a.client.delete("/api/sessions/walk").status_code == 200

    again = b.client.post("/api/sessions/import", content=exported.content)
    assert (again.status_code, again.json()["detail"]) == (409, "session 'walk' already exists")
    assert b.client.post("/api/sessions/import", params={"id": "walk-2"}, content=exported.content).status_code == 201


def test_a_session_from_another_model_is_refused(start_server, tmp_path):
    a = start_server(tmp_path / "a")
    a.client.post("/api/sessions", json={"id": "s"})
    for i in range(4):
        push(a.client, "s", i)
    exported = a.client.get("/api/sessions/s/export").content
    other = SpatialTTTPipeline.from_pretrained(make_tiny_model_folder(tmp_path / "other", seed=1))
    b = Server(other, tmp_path / "b", chunk_frames=4, size=(64, 64))
    try:
        refused = b.client.post("/api/sessions/import", content=exported)
        assert refused.status_code == 409
        assert refused.json()["detail"].startswith("session s: ") and refused.json()["detail"].endswith(
            "was saved from another model or config; it cannot continue with this one")
        assert b.client.get("/api/sessions").json()["sessions"] == []
        assert not (tmp_path / "b" / "s").exists()
    finally:
        b.stop()
