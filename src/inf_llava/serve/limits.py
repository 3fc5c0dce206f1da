"""Request-body size limit as a plain ASGI middleware: refuses with 413 on ``Content-Length`` alone, and counts the
bytes of chunked bodies as they arrive, so an oversized upload is never buffered whole."""

from __future__ import annotations

import json
from typing import Any

from .errors import error_body


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    def __init__(self, app: Any, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _reply(send, 400, "invalid Content-Length header")
                return
            if int(declared) > self.limit:
                await _reply(send, 413, self._message(int(declared)))
                return
        received = 0
        started = False

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, self._message(received))

    def _message(self, size: int) -> str:
        return f"request body of {size} bytes is over this server's limit of {self.limit} bytes"


async def _reply(send: Any, status: int, message: str) -> None:
    body = json.dumps(error_body(status, message, code="request_too_large" if status == 413 else None)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
