"""`spatial-ttt serve` as a user runs it: a subprocess on 127.0.0.1 with a token; killed, its saved sessions live on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from typer.testing import CliRunner

from spatial_ttt.cli import app

from .conftest import ask, free_port, push

SRC = Path(__file__).resolve().parents[2] / "src"


def spatial_ttt(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC), OMP_NUM_THREADS="1", COLUMNS="200")
    return subprocess.Popen([sys.executable, "-m", "spatial_ttt", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_command_binds_localhost_with_a_token_and_saved_sessions_outlive_a_kill(model_dir, tmp_path, start_server):
    (tmp_path / "token").write_text("s3cret\n")
    port, state = free_port(), tmp_path / "state"
    server = spatial_ttt("serve", model_dir, "--port", port, "--state-dir", state, "--token-file", tmp_path / "token",
                         "--size", "64x64", "--chunk-frames", "4")
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"Authorization": "Bearer s3cret"})
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                if client.get("/api/health").json() == {"ok": True, "auth": True}:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not come up"
                time.sleep(0.2)
        listening = [c.laddr for c in psutil.Process(server.pid).net_connections() if c.status == psutil.CONN_LISTEN]
        assert [(a.ip, a.port) for a in listening] == [("127.0.0.1", port)]
        assert httpx.get(f"http://127.0.0.1:{port}/api/sessions").status_code == 401

        client.post("/api/sessions", json={"id": "s"})
        for i in range(4):
            assert push(client, "s", i).status_code == 200
        saved = ask(client, "s")
        assert client.post("/api/sessions/s/save").json()["disk_bytes"] > 0
        for i in range(4, 8):
            push(client, "s", i)  # observed but never saved: lost with the process
        assert ask(client, "s") != saved
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    again = start_server(state, size=(64, 64), chunk_frames=4).client
    info = again.get("/api/sessions/s").json()
    assert (info["frames"], info["last_t"], info["in_memory"]) == (4, 3.0, False)
    assert ask(again, "s") == saved


def test_serve_command_refuses_bad_options_in_one_line(model_dir, tmp_path):
    """(In-process: a second server process would cost seconds; the subprocess test above runs the real command.)"""
    runner = CliRunner()
    cases = {
        ("--token-file", str(tmp_path / "missing")): f"error: token file not found: {tmp_path / 'missing'}",
        ("--chunk-frames", "3"): "error: chunk_frames must be an even number from 2 to 256, got 3",
        ("--size", "64x50"): "error: --size 64x50: height and width must be positive multiples of 32 (patch 16 x merge 2)",
        ("--idle-seconds", "0"): "error: memory limits, upload limits and --idle-seconds must be positive",
    }
    for options, message in cases.items():
        result = runner.invoke(app, ["serve", str(model_dir), *options])
        assert result.exit_code == 2, result.output
        assert result.output.strip() == message
