"""The HTTP app: an OpenAI-compatible chat API over an :class:`~inf_llava.inference.InfLlavaEngine`, plus the web
page. Built by a factory (``create_app(engine, settings)``); nothing is loaded at import time.

Endpoints: ``POST /v1/chat/completions`` (text + ``image_url`` parts, ``stream: true`` as server-sent events),
``GET /v1/models``, ``GET /health``, ``POST /v1/inf-llava/views`` (the DCM crops of an image, for the page) and
``GET /`` (the page). Errors are OpenAI-shaped JSON (:mod:`.errors`).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel

from ..inference import Completion, GenerationSettings, InfLlavaEngine
from .errors import APIError, error_body, install_error_handlers
from .image_sources import decode_image_url
from .limits import BodySizeLimit
from .scheduler import Job, Scheduler
from .schemas import ChatCompletionRequest, to_engine_messages
from .settings import ServerSettings


class ViewsRequest(BaseModel):
    image: str  # a data: URL (or an http(s) URL where remote images are allowed)


def create_app(engine: InfLlavaEngine, settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app serving ``engine`` under ``settings`` (see :class:`ServerSettings` for every limit)."""
    settings = settings or ServerSettings()
    scheduler = Scheduler(
        engine,
        max_pending=settings.max_pending,
        max_batch_size=settings.max_batch_size,
        batch_wait_s=settings.batch_wait_ms / 1000,
    )
    model_name = settings.model_name or "inf-llava"
    created = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await scheduler.start()
        yield
        await scheduler.stop()

    app = FastAPI(title="inf-llava", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.scheduler = scheduler
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, limit=settings.max_request_bytes)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )

    def authorize(request: Request) -> None:
        if settings.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            raise APIError(401, "missing or invalid API key (send Authorization: Bearer <key>)", code="invalid_api_key")

    # ---- page and metadata -------------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(_static("index.html"))

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str):
        kinds = {".js": "text/javascript", ".css": "text/css"}
        suffix = name[name.rfind(".") :] if "." in name else ""
        if suffix not in kinds or "/" in name or name.startswith("."):
            raise APIError(404, f"no such file: {name}", code="not_found")
        try:
            return HTMLResponse(_static(name), media_type=kinds[suffix])
        except FileNotFoundError:
            raise APIError(404, f"no such file: {name}", code="not_found") from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "pending": scheduler.pending}

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "inf-llava"}],
        }

    # ---- chat completions --------------------------------------------------------------------------------------
    @app.post("/v1/chat/completions", dependencies=[Depends(authorize)])
    async def chat_completions(body: ChatCompletionRequest):
        deadline = time.monotonic() + settings.request_timeout
        if settings.model_name is not None and body.model not in (None, settings.model_name):
            raise APIError(
                404,
                f"model {body.model!r} is not served here; this server serves {model_name!r}",
                code="model_not_found",
            )
        if body.n != 1:
            raise APIError(400, "n must be 1 (one answer per request)", param="n")
        job = await _job(body, deadline)
        request_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not body.stream:
            result = await scheduler.complete(job)
            return JSONResponse(_completion_body(request_id, model_name, result))
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = scheduler.stream(job)
        first = await _first_event(events)  # errors before the first token still get a proper status code
        return StreamingResponse(
            _sse(request_id, model_name, first, events, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def _job(body: ChatCompletionRequest, deadline: float) -> Job:
        try:
            messages, urls = to_engine_messages(body.messages)
            stops = body.stop_strings()
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_request") from None
        if not any(m["role"] == "user" for m in messages):
            raise APIError(400, "messages must contain at least one user message", param="messages")
        if len(urls) > settings.max_images:
            raise APIError(
                400, f"{len(urls)} images in one request; the limit is {settings.max_images}", code="too_many_images"
            )
        max_tokens = body.max_completion_tokens or body.max_tokens or settings.default_max_tokens
        if max_tokens > settings.max_tokens_limit:
            raise APIError(
                400,
                f"max_tokens {max_tokens} is over this server's limit of {settings.max_tokens_limit}",
                param="max_tokens",
            )
        images = [await asyncio.to_thread(decode_image_url, url, i, settings) for i, url in enumerate(urls)]
        await asyncio.to_thread(_check_prompt, engine, messages, len(images))  # tokenising can take a while
        generation = GenerationSettings(
            max_new_tokens=max_tokens,
            temperature=body.temperature or 0.0,
            top_p=body.top_p if body.top_p is not None else 1.0,
            stop=stops,
            seed=body.seed,
        )
        return Job(messages=messages, images=images, settings=generation, deadline=deadline)

    @app.post("/v1/inf-llava/views", dependencies=[Depends(authorize)])
    async def views(body: ViewsRequest) -> dict[str, Any]:
        """The DCM layout of an image (local tiles, global strided views) as the model sees it."""
        from .views import dcm_views

        image = await asyncio.to_thread(decode_image_url, body.image, 0, settings)
        return await asyncio.to_thread(dcm_views, engine, image)

    return app


def _check_prompt(engine: InfLlavaEngine, messages: list[dict[str, Any]], n_images: int) -> None:
    """Refuse (400) what would fail inside generation: bad turn order, image markers in text, over-long prompts."""
    try:
        prompt = engine.prompt(messages)
        length = engine.prompt_length(messages)
    except ValueError as exc:
        raise APIError(400, " ".join(str(exc).split()), code="invalid_request") from None
    marker = engine.processor.image_placeholder
    if prompt.count(marker) != n_images:
        raise APIError(
            400,
            f"the text contains the image marker {marker!r}; send images as image_url parts",
            code="invalid_request",
        )
    context = engine.context_length
    if context is not None and length >= context:
        raise APIError(
            400,
            f"the prompt is {length} tokens (image slots included); the model's context is {context} tokens",
            code="context_length_exceeded",
        )


def _completion_body(request_id: str, model: str, result: Completion) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.text},
                "finish_reason": result.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
    }


def _usage(result: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


async def _first_event(events: AsyncIterator[str | Completion]) -> str | Completion | None:
    try:
        return await anext(events)
    except StopAsyncIteration:
        return None


async def _sse(
    request_id: str,
    model: str,
    first: str | Completion | None,
    events: AsyncIterator[str | Completion],
    include_usage: bool,
) -> AsyncIterator[str]:
    """OpenAI ``chat.completion.chunk`` events, ending with ``data: [DONE]`` (or an error event)."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        event = first
        while event is not None:
            if isinstance(event, Completion):
                yield chunk({}, event.finish_reason)
                if include_usage:
                    body = {
                        "id": request_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": _usage(event),
                    }
                    yield f"data: {json.dumps(body)}\n\n"
                break
            yield chunk({"content": event})
            event = await anext(events, None)
    except APIError as exc:
        yield f"data: {json.dumps(error_body(exc.status, exc.message, code=exc.code))}\n\n"
        return
    finally:
        await events.aclose()
    yield "data: [DONE]\n\n"


def _static(name: str) -> str:
    return resources.files("inf_llava.serve").joinpath("static", name).read_text(encoding="utf-8")
