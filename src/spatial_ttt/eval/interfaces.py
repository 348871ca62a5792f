"""What the evaluation needs from a model and from a benchmark.

The model side implements `VideoQAModel` (one call per question) and, for VSI-SUPER, `StreamingQAModel`
(a stream whose memory stays bounded while video is fed in, queried from snapshots). Prompts are built
here, in the evaluation; the model only wraps them in its own chat template.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from spatial_ttt.eval.results import Summary


@runtime_checkable
class VideoQAModel(Protocol):
    def answer(self, video: str | Path | list[Path], prompt: str, *, max_new_tokens: int) -> str:
        """Answer `prompt` about one video file, or about a list of image files (multi-view)."""
        ...


@runtime_checkable
class StreamSession(Protocol):
    def observe_video(self, path: str | Path, start_s: float | None = None, end_s: float | None = None) -> None:
        """Feed [start_s, end_s) of a video (None = from the start / to the end) into the stream memory."""
        ...

    def ask(self, prompt: str, *, max_new_tokens: int) -> str:
        """Answer from a snapshot of the memory; the stream itself is left unchanged."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class StreamingQAModel(Protocol):
    def open_stream(self) -> StreamSession: ...


class Sample(Protocol):
    """One benchmark item: a stable id (the resume key) and the media files it needs."""

    @property
    def id(self) -> str: ...

    @property
    def media(self) -> Sequence[Path]: ...


class Benchmark(Protocol):
    """One benchmark: how to read it, ask the model, score an answer and aggregate."""

    name: str
    streaming: bool  # True: the model must be a StreamingQAModel
    default_max_new_tokens: int

    def load(self, data: Path, work_dir: Path) -> list[Any]:
        """Read and validate all records (work_dir: where embedded media may be written)."""
        ...

    def run(self, model: Any, sample: Any, *, max_new_tokens: int, rooms_hint: bool) -> dict[str, Any]:
        """Ask the model and return the scored per-sample result (JSON-serialisable, with "id")."""
        ...

    def summarize(self, results: list[dict[str, Any]]) -> Summary: ...
