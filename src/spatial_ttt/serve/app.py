"""The HTTP API (FastAPI) over a SessionManager, and the web page. Routes are listed in docs/serving.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask

from .errors import ClientError
from .frames import check_time, decode_image, decode_video
from .sessions import ServeSettings, SessionManager, SessionSettings

STATIC = Path(__file__).resolve().parent / "static"


class CreateBody(BaseModel):
    id: str | None = None
    fps: float | None = None
    chunk_frames: int | None = None
    size: tuple[int, int] | None = None


class AskBody(BaseModel):
    question: str = Field(min_length=1, max_length=8000)
    max_new_tokens: int = Field(16, ge=1)
    stream: bool = True


class SnapshotBody(BaseModel):
    id: str | None = None


def create_app(pipeline: Any, settings: ServeSettings) -> FastAPI:
    """An ASGI app serving streaming sessions on ``pipeline`` (a SpatialTTTPipeline)."""
    manager = SessionManager(pipeline, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        manager.load_saved()
        sweeper = asyncio.create_task(_sweep(manager, settings.idle_seconds))
        yield
        sweeper.cancel()
        await manager.save_all()  # a restart finds every session where it was
        manager.close()

    app = FastAPI(title="spatial-ttt serve", lifespan=lifespan)
    app.state.manager = manager

    @app.middleware("http")
    async def body_limit(request: Request, call_next: Any) -> Response:
        """Any body over the upload limit (imports: the import limit) is refused before it is read."""
        limit, option = ((settings.max_import_bytes, "--max-import-mb") if request.url.path == "/api/sessions/import"
                         else (settings.max_upload_bytes, "--max-upload-mb"))
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return JSONResponse({"detail": f"the request body is {int(length)} bytes, over the upload limit of {limit} "
                                 f"bytes ({option})"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(ClientError)
    async def client_error(request: Request, err: ClientError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
        return JSONResponse({"detail": err.message}, status_code=err.status, headers=headers)

    def authorized(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given.encode(), f"Bearer {settings.token}".encode()):
            raise ClientError(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>'")

    api = APIRouter(prefix="/api", dependencies=[Depends(authorized)])

    @api.get("/sessions")
    async def list_sessions() -> dict[str, Any]:
        return manager.describe()

    @api.post("/sessions", status_code=201)
    async def create(body: CreateBody) -> dict[str, Any]:
        session_settings = SessionSettings(
            settings.fps if body.fps is None else body.fps,
            settings.chunk_frames if body.chunk_frames is None else body.chunk_frames,
            settings.size if body.size is None else tuple(body.size),
        )
        return (await manager.create(body.id, session_settings)).describe()

    @api.post("/sessions/import", status_code=201)
    async def import_session(request: Request, id: str | None = None) -> dict[str, Any]:
        handle, name = tempfile.mkstemp(dir=manager.state_dir, prefix=".import-", suffix=".tar")
        try:
            with os.fdopen(handle, "wb") as file:
                async for chunk in _body(request, settings.max_import_bytes, "the session file", "--max-import-mb"):
                    file.write(chunk)
            return (await manager.import_tar(Path(name), id)).describe()
        finally:
            os.unlink(name)

    @api.get("/sessions/{session_id}")
    async def describe(session_id: str) -> dict[str, Any]:
        return manager.get(session_id).describe()

    @api.post("/sessions/{session_id}/frames")
    async def frames(session_id: str, request: Request, t: float = Query(..., description="seconds")) -> dict[str, Any]:
        session = manager.get(session_id)
        check_time(t)
        data = await _read_body(request, settings.max_upload_bytes, "the frame", "--max-upload-mb")
        frame = await asyncio.to_thread(decode_image, data, session.settings.size)
        return await manager.push(session_id, [(frame, t)])

    @api.post("/sessions/{session_id}/video")
    async def video(session_id: str, request: Request, start: float = Query(..., description="seconds")) -> dict[str, Any]:
        session = manager.get(session_id)
        check_time(start, "start")
        data = await _read_body(request, settings.max_upload_bytes, "the video chunk", "--max-upload-mb")
        decoded = await asyncio.to_thread(decode_video, data, start, session.settings.fps, session.settings.size)
        return await manager.push(session_id, decoded)

    @api.post("/sessions/{session_id}/ask")
    async def ask(session_id: str, body: AskBody) -> Response:
        manager.get(session_id)
        if not body.question.strip():
            raise ClientError(422, "the question is empty")
        if body.max_new_tokens > settings.max_new_tokens:
            raise ClientError(422, f"max_new_tokens {body.max_new_tokens} is over the server's limit of "
                              f"{settings.max_new_tokens} (--max-new-tokens)")
        events = manager.answer(session_id, body.question, body.max_new_tokens)
        first = await anext(events)  # errors before the first token get their own HTTP status
        if not body.stream:
            last = first
            async for last in events:
                pass
            return JSONResponse(last)
        return StreamingResponse(_sse(first, events), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @api.post("/sessions/{session_id}/snapshot", status_code=201)
    async def snapshot(session_id: str, body: SnapshotBody | None = None) -> dict[str, Any]:
        return (await manager.snapshot(session_id, body.id if body else None)).describe()

    @api.post("/sessions/{session_id}/save")
    async def save(session_id: str) -> dict[str, Any]:
        return (await manager.save(session_id)).describe()

    @api.post("/sessions/{session_id}/reset")
    async def reset(session_id: str) -> dict[str, Any]:
        return (await manager.reset(session_id)).describe()

    @api.delete("/sessions/{session_id}")
    async def delete(session_id: str) -> dict[str, Any]:
        await manager.delete(session_id)
        return {"deleted": session_id}

    @api.get("/sessions/{session_id}/export")
    async def export(session_id: str) -> Response:
        path = await manager.export(session_id)
        return FileResponse(path, media_type="application/x-tar", filename=f"{session_id}.tar",
                            background=BackgroundTask(os.unlink, path))

    app.include_router(api)

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"ok": True, "auth": settings.token is not None}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/app.js", include_in_schema=False)
    async def script() -> FileResponse:
        return FileResponse(STATIC / "app.js", media_type="text/javascript")

    return app


async def _body(request: Request, limit: int, what: str, option: str) -> AsyncIterator[bytes]:
    """The request body in pieces, refused with 413 once it passes ``limit`` bytes (a body whose Content-Length
    says so never gets here: see ``body_limit``)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, f"{what} is over the upload limit of {limit} bytes ({option})")
        yield chunk


async def _read_body(request: Request, limit: int, what: str, option: str) -> bytes:
    return b"".join([chunk async for chunk in _body(request, limit, what, option)])


async def _sse(first: dict[str, Any], events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    """Server-sent events: ``token`` events with {"token": text}, then one ``done`` with the answer (or ``error``)."""

    def encode(event: dict[str, Any]) -> str:
        return f"event: {'token' if 'token' in event else 'done'}\ndata: {json.dumps(event)}\n\n"

    yield encode(first)
    try:
        async for event in events:
            yield encode(event)
    except ClientError as err:
        yield f"event: error\ndata: {json.dumps({'status': err.status, 'detail': err.message})}\n\n"


async def _sweep(manager: SessionManager, idle_seconds: float) -> None:
    """Parks idle sessions on disk, checking a few times per idle period."""
    while True:
        await asyncio.sleep(max(0.05, min(5.0, idle_seconds / 4)))
        await manager.evict_idle()
