"""Serving INF-LLaVA: an OpenAI-compatible HTTP API with micro-batching, and a web page (``inf-llava serve``).

Needs the ``serve`` extra (fastapi, uvicorn). ``create_app(engine, settings)`` builds the app; ``run_server`` runs it
with uvicorn. Names are imported lazily so that reading :class:`ServerSettings` needs neither.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ServerSettings", "create_app", "run_server", "start_background_server"]


def __getattr__(name: str) -> Any:
    if name == "ServerSettings":
        from .settings import ServerSettings

        return ServerSettings
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("run_server", "start_background_server"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
