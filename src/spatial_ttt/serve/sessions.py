"""Live sessions on one model: frames in, answers out, memory limits, idle sessions parked on disk.

Every operation that touches a stream's state runs as a job on one worker thread, so the model runs one job at a
time in arrival order and a session's state is never seen half-updated. The event loop keeps only bookkeeping
(clocks, pending frames, byte counts); a per-session lock keeps one session's requests in order.

On disk a session is a folder ``STATE_DIR/<id>/``: ``stream.safetensors`` (StreamSession.save), ``session.json``
(settings and clock) and ``pending.npy`` (frames received but not yet observed). That folder, or the tar that
``export`` makes of it, is the unit that moves between servers.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import torch

from ..streaming import StreamError, StreamSession
from .errors import ClientError

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
FILES = ("session.json", "stream.safetensors", "pending.npy")
MB = 1 << 20


@dataclass
class ServeSettings:
    """Server-wide settings (``spatial-ttt serve`` options); session defaults for fps, chunk_frames and size."""

    state_dir: Path
    token: str | None = None
    max_session_bytes: int = 4096 * MB
    max_total_bytes: int = 16384 * MB
    max_upload_bytes: int = 32 * MB
    max_import_bytes: int = 65536 * MB
    idle_seconds: float = 300.0
    fps: float = 1.0
    chunk_frames: int = 8
    size: tuple[int, int] = (352, 480)
    max_new_tokens: int = 64


@dataclass
class SessionSettings:
    fps: float
    chunk_frames: int
    size: tuple[int, int]

    def check(self) -> SessionSettings:
        if not (math.isfinite(self.fps) and 0 < self.fps <= 60):
            raise ClientError(422, f"fps must be in (0, 60], got {self.fps}")
        if not (2 <= self.chunk_frames <= 256 and self.chunk_frames % 2 == 0):
            raise ClientError(422, f"chunk_frames must be an even number from 2 to 256, got {self.chunk_frames}")
        h, w = self.size
        if not (0 < h <= 2048 and 0 < w <= 2048 and h % 32 == 0 and w % 32 == 0):
            raise ClientError(422, f"size must be [height, width], multiples of 32 up to 2048, got {list(self.size)}")
        return self


@dataclass
class Session:
    id: str
    settings: SessionSettings
    stream: StreamSession | None = None  # None while parked on disk (or not created yet)
    pending: list[tuple[np.ndarray, float]] = field(default_factory=list)
    last_t: float | None = None  # the last frame received (kept or not)
    next_t: float | None = None  # frames before this time are dropped: the session's fps
    frames: int = 0  # handed to the model (observed, or in the chunk being observed)
    observing: asyncio.Future | None = None  # the chunk being observed while the client sends the next one
    dropped: int = 0
    memory: int = 0  # bytes of the stream while in memory (StreamSession.memory_bytes)
    disk_bytes: int = 0
    per_frame: float = 0.0  # measured memory growth per observed frame
    last_used: float = field(default_factory=time.monotonic)
    busy: int = 0
    deleted: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def pending_bytes(self) -> int:
        return sum(frame.nbytes for frame, _ in self.pending)

    def admit(self, times: list[float]) -> tuple[list[bool], float | None]:
        """Which frames the session's fps keeps, and the next slot time; refuses frames out of order.

        Slots lie 1/fps apart from the first frame; a frame fills the slot nearest to it if that one is still
        free, so a camera's jitter around the chosen rate loses no frames."""
        last, next_t, keep = self.last_t, self.next_t, []
        half = 0.5 / self.settings.fps
        for t in times:
            if last is not None and t <= last:
                raise ClientError(409, f"frames out of order: t={t:g} s is not after the previous frame (t={last:g} s) of session {self.id}")
            last = t
            if next_t is None or t >= next_t - half:
                keep.append(True)
                next_t = t if next_t is None else next_t
                while next_t < t + half:
                    next_t += 2 * half
            else:
                keep.append(False)
        return keep, next_t

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id, "fps": self.settings.fps, "chunk_frames": self.settings.chunk_frames,
            "size": list(self.settings.size), "frames": self.frames, "pending": len(self.pending),
            "dropped": self.dropped, "last_t": self.last_t, "in_memory": self.stream is not None,
            "memory_bytes": self.memory + self.pending_bytes if self.stream is not None else 0,
            "disk_bytes": self.disk_bytes, "idle_s": round(time.monotonic() - self.last_used, 3),
        }


def stream_bytes(stream: StreamSession) -> int:
    return int(sum(stream.memory_bytes().values()))


class SessionManager:
    def __init__(self, pipeline: Any, settings: ServeSettings) -> None:
        self.pipeline, self.settings = pipeline, settings
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.sessions: dict[str, Session] = {}
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="spatial-ttt-model")
        self.jobs = 0

    # -- bookkeeping (event loop) ---------------------------------------------------------------------------

    def load_saved(self) -> None:
        """Registers the sessions saved in the state folder (by an earlier run); they load on first use."""
        for folder in sorted(self.state_dir.iterdir()):
            if (folder / "session.json").is_file() and (folder / "stream.safetensors").is_file():
                session = self._read_folder(folder, folder.name)
                self.sessions[session.id] = session

    def get(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise ClientError(404, f"unknown session {session_id!r}")
        return session

    def memory_in_use(self) -> int:
        return sum(s.memory + s.pending_bytes for s in self.sessions.values() if s.stream is not None)

    def describe(self) -> dict[str, Any]:
        return {
            "sessions": [s.describe() for s in self.sessions.values()],
            "memory_bytes": self.memory_in_use(), "max_total_bytes": self.settings.max_total_bytes,
            "max_session_bytes": self.settings.max_session_bytes, "jobs": self.jobs,
        }

    def new_id(self, wanted: str | None) -> str:
        if wanted is None:
            return uuid4().hex[:12]
        if not SESSION_ID.fullmatch(wanted):
            raise ClientError(422, f"session id {wanted!r}: use 1-64 letters, digits, '-' or '_'")
        if wanted in self.sessions:
            raise ClientError(409, f"session {wanted!r} already exists")
        return wanted

    async def run(self, session: Session, job: Callable[..., Any], *args: Any) -> Any:
        """Runs ``job(session, *args)`` on the model thread (after the jobs queued before it)."""
        session.busy += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.worker, self._job, session, job, args)
        finally:
            session.busy -= 1
            session.last_used = time.monotonic()

    # -- operations (event loop) ----------------------------------------------------------------------------

    async def create(self, wanted_id: str | None, settings: SessionSettings) -> Session:
        session = Session(self.new_id(wanted_id), settings.check())
        self.sessions[session.id] = session
        try:
            await self.run(session, lambda s: self._make_room(0, s))
        except ClientError:
            del self.sessions[session.id]
            raise
        return session

    async def push(self, session_id: str, frames: list[tuple[np.ndarray, float]]) -> dict[str, Any]:
        session = self.get(session_id)
        async with session.lock:
            keep, next_t = session.admit([t for _, t in frames])
            kept = [f for f, k in zip(frames, keep) if k]
            growth = int(session.per_frame * len(kept))
            limit = self.settings.max_session_bytes
            if session.stream is not None and session.memory + growth > limit:
                raise ClientError(409, f"session {session.id} holds {session.memory / MB:.1f} MB and these frames would "
                                  f"add ~{growth / MB:.1f} MB, over the per-session limit of {limit / MB:.1f} MB: "
                                  "reset it, or delete it and start a new one")
            if self.memory_in_use() + growth + sum(f.nbytes for f, _ in kept) > self.settings.max_total_bytes:
                await self.run(session, lambda s: self._make_room(growth, s))
            session.last_t, session.next_t = frames[-1][1], next_t
            session.pending.extend(kept)
            session.dropped += len(frames) - len(kept)
            chunk = session.settings.chunk_frames
            while len(session.pending) >= chunk:
                batch, session.pending = session.pending[:chunk], session.pending[chunk:]
                await self._observe_next(session, batch)
            return {**session.describe(), "kept": len(kept), "received": len(frames)}

    async def _observe_next(self, session: Session, batch: list[tuple[np.ndarray, float]]) -> None:
        """Starts observing ``batch`` once the session's previous chunk is done, without waiting for it: the client
        sends the next chunk's frames meanwhile (a camera stalls for no chunk), and at most one chunk per session
        waits for the model (back-pressure). A failure of the previous chunk is reported here."""
        if session.observing is not None:
            previous, session.observing = session.observing, None
            await previous
        session.frames += len(batch)
        session.observing = asyncio.ensure_future(self.run(session, self._observe, batch))
        session.observing.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen if unawaited

    async def answer(self, session_id: str, question: str, max_new_tokens: int) -> AsyncIterator[dict[str, Any]]:
        """Events of one answer: {"token": text piece}... then {"answer", "frames", ...}; the memory is unchanged.
        Frames waiting for a full chunk are observed first (complete pairs), so the answer sees them."""
        session = self.get(session_id)
        loop = asyncio.get_running_loop()
        tokens: asyncio.Queue[int | None] = asyncio.Queue()
        cancel = threading.Event()
        await session.lock.acquire()
        try:
            pairs = len(session.pending) // 2 * 2
            batch, session.pending = session.pending[:pairs], session.pending[pairs:]
            session.frames += pairs
            start = time.perf_counter()
            job = asyncio.ensure_future(self.run(
                session, self._ask, batch, question, max_new_tokens,
                lambda token: loop.call_soon_threadsafe(tokens.put_nowait, token), cancel,
            ))
        except BaseException:
            session.lock.release()
            raise

        def finished(done: asyncio.Future) -> None:
            session.lock.release()
            tokens.put_nowait(None)
            if not done.cancelled():
                done.exception()  # seen here: a client that went away never awaits it

        job.add_done_callback(finished)
        ids: list[int] = []
        text = ""
        try:
            while (token := await tokens.get()) is not None:
                ids.append(token)
                decoded = self.pipeline.processor.decode(ids)
                if not decoded.endswith("\ufffd"):  # wait for the rest of a multi-byte character
                    yield {"token": decoded[len(text):]}
                    text = decoded
            await job
            answer = self.pipeline.processor.decode(ids)
            if answer.startswith(text) and len(answer) > len(text):  # the pieces add up to the answer
                yield {"token": answer[len(text):]}
            yield {"answer": answer.strip(), "tokens": len(ids), "frames": session.frames,  # as StreamSession.ask
                   "last_t": session.last_t, "seconds": round(time.perf_counter() - start, 4)}
        finally:
            cancel.set()  # a client that went away stops the decoding

    async def save(self, session_id: str) -> Session:
        session = self.get(session_id)
        async with session.lock:
            await self.run(session, self._save)
        return session

    async def reset(self, session_id: str) -> Session:
        session = self.get(session_id)
        async with session.lock:
            await self.run(session, self._reset)
        return session

    async def delete(self, session_id: str) -> None:
        session = self.get(session_id)
        async with session.lock:
            session.deleted = True
            del self.sessions[session_id]
            await asyncio.get_running_loop().run_in_executor(self.worker, self._remove, session)

    async def snapshot(self, session_id: str, new_id: str | None) -> Session:
        """A new session holding a copy of this one's memory and clock (it loads on first use)."""
        session = self.get(session_id)
        copy_id = self.new_id(new_id)
        async with session.lock:
            await self.run(session, lambda s: self._write(s, self.state_dir / copy_id))
        copy = self._read_folder(self.state_dir / copy_id, copy_id)
        self.sessions[copy_id] = copy
        return copy

    async def export(self, session_id: str) -> Path:
        """The session's folder as an uncompressed tar file (saved first); the caller removes the file."""
        session = await self.save(session_id)
        folder = self.state_dir / session.id
        handle, name = tempfile.mkstemp(dir=self.state_dir, prefix=".export-", suffix=".tar")
        os.close(handle)
        with tarfile.open(name, mode="w") as tar:
            for file in FILES:
                if (folder / file).is_file():
                    tar.add(folder / file, arcname=file)
        return Path(name)

    async def import_tar(self, path: Path, wanted_id: str | None) -> Session:
        """A session exported by another server (same model): checked by loading it, then kept in memory."""
        try:
            with tarfile.open(path, mode="r:") as tar:
                members = {m.name: m for m in tar.getmembers()}
                unknown = [n for n, m in members.items() if n not in FILES or not m.isfile()]
                if unknown or "session.json" not in members or "stream.safetensors" not in members:
                    raise ClientError(400, f"not an exported session: it must hold session.json and stream.safetensors "
                                      f"(and maybe pending.npy), found {sorted(members)}")
                meta = json.loads(tar.extractfile(members["session.json"]).read())
                session_id = self.new_id(wanted_id or meta.get("id"))
                folder = self.state_dir / session_id
                folder.mkdir()
                for name, member in members.items():
                    with tar.extractfile(member) as source, open(folder / name, "wb") as target:
                        shutil.copyfileobj(source, target, 16 * MB)
        except (tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise ClientError(400, f"not an exported session (a tar of session.json and stream.safetensors): {err}") from None
        session = self._read_folder(folder, session_id)
        self.sessions[session_id] = session
        try:
            await self.run(session, lambda s: self._write(s, folder))  # loads (checks the model) and rewrites the id
        except ClientError:
            del self.sessions[session_id]
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return session

    async def evict_idle(self) -> list[str]:
        """Parks sessions idle for longer than ``idle_seconds`` on disk; returns their ids."""
        now, evicted = time.monotonic(), []
        for session in list(self.sessions.values()):
            if session.stream is not None and not session.busy and now - session.last_used > self.settings.idle_seconds:
                async with session.lock:
                    if session.stream is not None and not session.deleted:
                        await asyncio.get_running_loop().run_in_executor(self.worker, self._evict, session)
                        evicted.append(session.id)
        return evicted

    async def save_all(self) -> None:
        for session in list(self.sessions.values()):
            if session.stream is not None:
                async with session.lock:
                    await asyncio.get_running_loop().run_in_executor(self.worker, self._save, session)

    def close(self) -> None:
        self.worker.shutdown(wait=True)

    # -- jobs (model thread) --------------------------------------------------------------------------------

    def _job(self, session: Session, job: Callable[..., Any], args: tuple) -> Any:
        if session.deleted:
            raise ClientError(404, f"unknown session {session.id!r}")
        self.jobs += 1
        if session.stream is None:
            self._restore(session)
        try:
            return job(session, *args)
        except StreamError as err:
            raise ClientError(422, str(err)) from None
        finally:
            if session.stream is not None:
                session.memory = stream_bytes(session.stream)
            self._settle(session)

    def _restore(self, session: Session) -> None:
        path = self.state_dir / session.id / "stream.safetensors"
        self._make_room(path.stat().st_size if path.is_file() else 0, session)
        if not path.is_file():
            session.stream = self.pipeline.stream()
            return
        try:
            session.stream = StreamSession.load(path, self.pipeline.model, self.pipeline.processor)
        except StreamError as err:
            raise ClientError(409, f"session {session.id}: {err}") from None

    def _make_room(self, needed: int, keep: Session) -> None:
        """Parks the least recently used idle sessions on disk until ``needed`` more bytes fit the server limit."""
        limit = self.settings.max_total_bytes
        candidates = sorted((s for s in self.sessions.values() if s is not keep and s.stream is not None and not s.busy),
                            key=lambda s: s.last_used)
        while self.memory_in_use() + needed > limit:
            if not candidates:
                raise ClientError(429, f"server memory limit: sessions in memory hold {self.memory_in_use() / MB:.1f} MB, "
                                  f"{needed / MB:.1f} MB more are needed and the limit is {limit / MB:.1f} MB; no idle "
                                  "session is left to park on disk: delete sessions or try again later")
            self._evict(candidates.pop(0))

    def _settle(self, keep: Session) -> None:
        """After a job grew ``keep`` past the server limit: parks idle sessions until the rest fits (if it can)."""
        try:
            self._make_room(0, keep)
        except ClientError:
            pass  # only ``keep`` is left in memory; its next request meets the limit

    def _observe(self, session: Session, batch: list[tuple[np.ndarray, float]]) -> None:
        before = stream_bytes(session.stream)
        frames = torch.from_numpy(np.stack([f for f, _ in batch]))
        session.stream.observe(frames, [t for _, t in batch])
        session.per_frame = max(0.0, (stream_bytes(session.stream) - before) / len(batch))

    def _ask(self, session: Session, batch: list, question: str, max_new_tokens: int,
             emit: Callable[[int], None], cancel: threading.Event) -> None:
        if batch:
            self._observe(session, batch)
        stops = set(self.pipeline.stop_token_ids)
        finished = False

        def on_token(token: torch.Tensor) -> None:
            nonlocal finished
            if cancel.is_set():
                raise ClientError(499, "the client went away")
            value = int(token[0])
            finished = finished or value in stops
            if not finished:
                emit(value)

        session.stream.ask(question, max_new_tokens=max_new_tokens, on_token=on_token,
                           stop_token_ids=self.pipeline.stop_token_ids)

    def _reset(self, session: Session) -> None:
        session.stream, session.frames = self.pipeline.stream(), 0
        session.pending, session.last_t, session.next_t, session.dropped, session.per_frame = [], None, None, 0, 0.0
        shutil.rmtree(self.state_dir / session.id, ignore_errors=True)

    def _save(self, session: Session) -> None:
        self._write(session, self.state_dir / session.id)

    def _evict(self, session: Session) -> None:
        self._save(session)
        session.stream, session.memory = None, 0

    def _remove(self, session: Session) -> None:
        session.stream = None
        shutil.rmtree(self.state_dir / session.id, ignore_errors=True)

    def _write(self, session: Session, folder: Path) -> None:
        """The stream, its pending frames and its clock into ``folder`` (each file replaced atomically)."""
        folder.mkdir(parents=True, exist_ok=True)
        session.stream.save(folder / "stream.safetensors")
        pending = folder / "pending.npy"
        if session.pending:
            with open(folder / "pending.npy.tmp", "wb") as f:
                np.save(f, np.stack([frame for frame, _ in session.pending]))
            (folder / "pending.npy.tmp").replace(pending)
        else:
            pending.unlink(missing_ok=True)
        meta = {
            "id": folder.name, "fps": session.settings.fps, "chunk_frames": session.settings.chunk_frames,
            "size": list(session.settings.size), "last_t": session.last_t, "next_t": session.next_t,
            "frames": session.stream.num_frames, "dropped": session.dropped, "per_frame": session.per_frame,
            "pending_times": [t for _, t in session.pending],
        }
        (folder / "session.json.tmp").write_text(json.dumps(meta))
        (folder / "session.json.tmp").replace(folder / "session.json")
        if folder.name == session.id:
            session.disk_bytes = (folder / "stream.safetensors").stat().st_size

    def _read_folder(self, folder: Path, session_id: str) -> Session:
        try:
            meta = json.loads((folder / "session.json").read_text())
            settings = SessionSettings(float(meta["fps"]), int(meta["chunk_frames"]), tuple(meta["size"])).check()
            times = meta.get("pending_times", [])
            frames = list(np.load(folder / "pending.npy")) if times else []
        except (OSError, ValueError, KeyError, TypeError, ClientError) as err:
            raise ClientError(400, f"{folder.name}: not a saved session ({err})") from None
        return Session(
            session_id, settings, pending=list(zip(frames, times)), last_t=meta["last_t"], next_t=meta["next_t"],
            frames=int(meta["frames"]), dropped=int(meta["dropped"]), per_frame=float(meta.get("per_frame", 0.0)),
            disk_bytes=(folder / "stream.safetensors").stat().st_size,
        )
