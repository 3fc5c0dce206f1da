"""Running the app with uvicorn, in the foreground (CLI) or in a background thread (tests, notebooks)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import uvicorn

from ..inference import InfLlavaEngine
from .app import create_app
from .settings import ServerSettings


def _config(engine: InfLlavaEngine, settings: ServerSettings, host: str, port: int, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(engine, settings),
        host=host,
        port=port,
        log_level=log_level,
        # A backstop above the app's own 429 admission control (open connections, not requests).
        limit_concurrency=max(4 * settings.max_pending, 64),
        timeout_keep_alive=5,
        server_header=False,
    )


def run_server(
    engine: InfLlavaEngine,
    settings: ServerSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM), then return after a graceful shutdown."""
    server = uvicorn.Server(_config(engine, settings or ServerSettings(), host, port, log_level))
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled, after shutting down
        pass


@dataclass
class BackgroundServer:
    """A server on a daemon thread; ``url`` is its base URL. Use as a context manager or call :meth:`stop`."""

    server: uvicorn.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.servers[0].sockets[0].getsockname()[1]

    @property
    def scheduler(self):
        """The app's :class:`~inf_llava.serve.scheduler.Scheduler` (batching statistics)."""
        return self.server.config.app.state.scheduler

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_background_server(
    engine: InfLlavaEngine, settings: ServerSettings | None = None, port: int = 0, timeout: float = 60.0
) -> BackgroundServer:
    """Start on 127.0.0.1 (``port=0``: any free port) and return once it accepts connections."""
    server = uvicorn.Server(_config(engine, settings or ServerSettings(), "127.0.0.1", port, "warning"))
    thread = threading.Thread(target=server.run, name="inf-llava-server", daemon=True)
    thread.start()
    start = time.monotonic()
    while not server.started:
        if not thread.is_alive() or time.monotonic() - start > timeout:
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    return BackgroundServer(server, thread)
