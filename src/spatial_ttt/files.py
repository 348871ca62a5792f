"""Atomic file writes: a reader (or a resumed job) sees the old file or the whole new one, never half of one."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temp file in the same folder, flushed to disk, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())  # the rename must not land before the data does (a crash would leave an empty file)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; results and datasets are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | Path, payload: Any, indent: int | None = None) -> None:
    """``payload`` as JSON (a trailing newline when indented), written atomically."""
    text = json.dumps(payload, indent=indent)
    atomic_write_text(path, text + "\n" if indent is not None else text)
