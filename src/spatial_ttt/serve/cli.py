"""The ``spatial-ttt serve MODEL`` command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def serve(
        model: Path = typer.Argument(..., help="Model folder: checkpoint (config.json + safetensors) and processor files."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; the default serves this machine only."),
        port: int = typer.Option(8000, "--port", min=1, max=65535),
        state_dir: Path = typer.Option(Path("spatial-ttt-sessions"), "--state-dir",
                                       help="Where sessions are saved (idle, on request, at shutdown) and restored from."),
        token_file: Optional[Path] = typer.Option(None, "--token-file",
                                                  help="Require 'Authorization: Bearer <token>'; the token is this file's first line."),
        fps: float = typer.Option(1.0, "--fps", help="Default frames per second kept by a new session."),
        chunk_frames: int = typer.Option(8, "--chunk-frames", min=2, help="Default frames per observe step (even)."),
        size: str = typer.Option("352x480", "--size", help="Default frame size HxW (multiples of 32)."),
        max_session_mb: float = typer.Option(4096, "--max-session-mb", help="Memory limit of one session."),
        max_total_mb: float = typer.Option(16384, "--max-total-mb", help="Memory limit of all sessions in memory."),
        max_upload_mb: float = typer.Option(32, "--max-upload-mb", help="Largest frame or video chunk upload."),
        max_import_mb: float = typer.Option(65536, "--max-import-mb", help="Largest imported session file."),
        idle_seconds: float = typer.Option(300, "--idle-seconds", help="Park a session on disk after this long unused."),
        max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1, help="Most tokens one answer may ask for."),
        processor: Optional[Path] = typer.Option(None, "--processor", help="Folder with the processor files, if not in MODEL."),
        device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    ) -> None:
        """Serve live video sessions over HTTP, with a web page at / (see docs/serving.md)."""
        import uvicorn

        from ..cli import _load_pipeline, _size, console, fail
        from .app import create_app
        from .errors import ClientError
        from .sessions import MB, ServeSettings, SessionSettings

        token = None
        if token_file is not None:
            if not token_file.is_file():
                fail(f"token file not found: {token_file}")
            token = (token_file.read_text().splitlines() or [""])[0].strip()
            if not token:
                fail(f"token file {token_file} is empty")
        hw = _size(size)
        try:
            SessionSettings(fps, chunk_frames, hw).check()
        except ClientError as err:
            fail(err.message)
        if min(max_session_mb, max_total_mb, max_upload_mb, max_import_mb, idle_seconds) <= 0:
            fail("memory limits, upload limits and --idle-seconds must be positive")
        if state_dir.exists() and not state_dir.is_dir():
            fail(f"--state-dir {state_dir} is a file")
        settings = ServeSettings(
            state_dir=state_dir, token=token, max_session_bytes=int(max_session_mb * MB), max_total_bytes=int(max_total_mb * MB),
            max_upload_bytes=int(max_upload_mb * MB), max_import_bytes=int(max_import_mb * MB), idle_seconds=idle_seconds,
            fps=fps, chunk_frames=chunk_frames, size=hw, max_new_tokens=max_new_tokens,
        )
        pipe = _load_pipeline(model, processor, device, dtype, None, {})
        console.print(f"serving {model} on http://{host}:{port}/ (sessions in {state_dir}; "
                      f"{'bearer token required' if token else 'no auth'})")
        uvicorn.run(create_app(pipe, settings), host=host, port=port, log_level="warning")
