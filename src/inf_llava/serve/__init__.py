"""Serving INF-LLaVA: an OpenAI-compatible HTTP API with micro-batching, and a web page (``inf-llava serve``).

Needs the ``serve`` extra (fastapi, uvicorn). ``create_app(engine, settings)`` builds the app; ``run_server`` runs it
with uvicorn.
"""

from .app import create_app
from .runner import run_server
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run_server"]
