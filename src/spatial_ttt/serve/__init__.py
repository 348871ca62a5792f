"""``spatial-ttt serve``: live video streams over HTTP (FastAPI), one model, many sessions, and a web page.

    from spatial_ttt.serve import ServeSettings, create_app
    app = create_app(pipeline, ServeSettings(state_dir="sessions"))   # any ASGI server runs it

See docs/serving.md for the API. FastAPI is imported on first use, so the rest of the CLI starts without it.
"""

from typing import Any

__all__ = ["ClientError", "ServeSettings", "SessionManager", "SessionSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ClientError":
        from .errors import ClientError

        return ClientError
    if name in ("ServeSettings", "SessionManager", "SessionSettings"):
        from . import sessions

        return getattr(sessions, name)
    raise AttributeError(name)
