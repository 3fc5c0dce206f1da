"""Micro-batching: concurrent requests with compatible settings share one ``generate`` call.

One asyncio task owns the engine and runs one job at a time in a worker thread (the event loop keeps serving
meanwhile). When it picks a request it also takes the queued requests that can share the call:

- greedy requests always batch together: the batch runs to the largest ``max_tokens`` without stop strings, and each
  answer is then cut to its own limit and stop strings, which gives exactly what that request would get alone
  (greedy batches equal batch size 1, and a greedy answer's first N tokens do not depend on the limit);
- sampled requests batch with others of the same temperature and top_p; a seeded one runs alone (its seed must
  drive its own generation);
- streaming requests run alone, token by token.

Admission control: at most ``max_pending`` requests may be queued or running; the next one is refused at once with
429 (``Retry-After: 1``) rather than piling up. Each job has a deadline; expired jobs are dropped from the queue and a
running generation stops at its batch's last deadline (``GenerationSettings.max_time``).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

from PIL import Image

from ..inference import Completion, GenerationSettings, InfLlavaEngine, cut_at_stop
from .errors import APIError

_ids = itertools.count()


@dataclass(eq=False)
class Job:
    """One request: its conversation, images and settings, and where its result goes."""

    messages: list[dict[str, Any]]
    images: list[Image.Image]
    settings: GenerationSettings
    deadline: float  # time.monotonic() value
    stream: bool = False
    serial: int = field(default_factory=lambda: next(_ids))
    cancelled: bool = False
    future: asyncio.Future | None = None  # non-streaming: the Completion
    pieces: asyncio.Queue | None = None  # streaming: ("piece", str) ... then ("done", Completion) or ("error", exc)

    @property
    def key(self) -> Hashable:
        """Jobs with equal keys can share one generate call."""
        s = self.settings
        if self.stream or (s.temperature > 0 and s.seed is not None):
            return ("alone", self.serial)
        if s.temperature == 0:
            return ("greedy",)
        return ("sample", s.temperature, s.top_p)


class Scheduler:
    """Queues jobs and runs them on ``engine``, batching compatible ones (see the module doc)."""

    def __init__(
        self, engine: InfLlavaEngine, *, max_pending: int = 64, max_batch_size: int = 8, batch_wait_s: float = 0.005
    ):
        self.engine = engine
        self.max_pending = max_pending
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._queue: deque[Job] = deque()
        self._wake = asyncio.Event()
        self._running = 0
        self._task: asyncio.Task | None = None
        self.batches_run = 0  # statistics for /health and tests
        self.largest_batch = 0

    @property
    def pending(self) -> int:
        return len(self._queue) + self._running

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="inf-llava-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        for job in self._queue:
            _fail(job, APIError(503, "the server is shutting down", code="shutting_down"))
        self._queue.clear()

    # ---- submitting ----------------------------------------------------------------------------------------------
    def _admit(self, job: Job) -> None:
        if self.pending >= self.max_pending:
            raise APIError(
                429,
                f"server busy: {self.pending} requests are queued or running (limit {self.max_pending}); retry shortly",
                code="server_busy",
                headers={"Retry-After": "1"},
            )
        self._queue.append(job)
        self._wake.set()

    async def complete(self, job: Job) -> Completion:
        """Queue a non-streaming job and wait for its answer (504 past its deadline)."""
        loop = asyncio.get_running_loop()
        job.future = loop.create_future()
        self._admit(job)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout=max(0.0, job.deadline - time.monotonic()))
        except asyncio.TimeoutError:
            job.cancelled = True
            raise _timeout() from None
        except asyncio.CancelledError:  # the client went away
            job.cancelled = True
            raise

    async def stream(self, job: Job) -> AsyncIterator[str | Completion]:
        """Queue a streaming job; yields text pieces, then the final :class:`Completion`. Raises APIError (504 past
        the deadline). Closing the iterator (client gone) stops the generation."""
        job.stream = True
        job.pieces = asyncio.Queue()
        self._admit(job)
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                try:
                    kind, value = await asyncio.wait_for(job.pieces.get(), timeout=max(0.0, remaining))
                except asyncio.TimeoutError:
                    raise _timeout() from None
                if kind == "piece":
                    yield value
                elif kind == "done":
                    yield value
                    return
                else:
                    raise value
        finally:
            job.cancelled = True  # no-op when finished; otherwise the worker stops generating

    # ---- running -------------------------------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            job = await self._next()
            if job.stream:
                await self._run_stream(job)
                continue
            if self.batch_wait_s > 0 and len(self._queue) + 1 < self.max_batch_size:
                await asyncio.sleep(self.batch_wait_s)  # let companions that are on their way arrive
            batch = [job, *self._take_compatible(job)]
            await self._run_batch(batch)

    async def _next(self) -> Job:
        while True:
            while self._queue:
                job = self._queue.popleft()
                if job.cancelled or job.deadline <= time.monotonic():
                    _fail(job, _timeout())
                    continue
                return job
            self._wake.clear()
            await self._wake.wait()

    def _take_compatible(self, first: Job) -> list[Job]:
        taken, kept = [], deque()
        now = time.monotonic()
        while self._queue:
            job = self._queue.popleft()
            if job.cancelled or job.deadline <= now:
                _fail(job, _timeout())
            elif len(taken) + 1 < self.max_batch_size and not job.stream and job.key == first.key:
                taken.append(job)
            else:
                kept.append(job)
        self._queue = kept
        return taken

    async def _run_batch(self, batch: list[Job]) -> None:
        self._running = len(batch)
        self.batches_run += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        first = batch[0].settings
        settings = replace(
            first,
            max_new_tokens=max(j.settings.max_new_tokens for j in batch),
            stop=(),
            max_time=max(0.001, max(j.deadline for j in batch) - time.monotonic()),
        )
        try:
            results = await asyncio.to_thread(
                self.engine.complete, [j.messages for j in batch], [j.images for j in batch], settings
            )
        except ValueError as exc:
            if len(batch) == 1:
                _fail(batch[0], APIError(400, _one_line(exc), code="invalid_request"))
            else:  # isolate the request that caused it; the others are answered alone
                self._running = 0
                for job in batch:
                    await self._run_batch([job])
            return
        except Exception as exc:  # noqa: BLE001 - reported to each waiting client as a 500
            for job in batch:
                _fail(job, APIError(500, f"generation failed ({type(exc).__name__}: {_one_line(exc)})"))
            return
        finally:
            self._running = 0
        for job, result in zip(batch, results):
            if job.future is not None and not job.future.done():
                job.future.set_result(self._fit(result, job.settings))

    def _fit(self, result: Completion, settings: GenerationSettings) -> Completion:
        """The batch's answer cut to this request's own token limit and stop strings."""
        tokens, finish, count = result.token_ids, result.finish_reason, result.completion_tokens
        limit = settings.max_new_tokens
        text = result.text
        if len(tokens) >= limit and (len(tokens) > limit or finish == "stop"):
            tokens, finish, count = tokens[:limit], "length", limit
            text = self.engine.processor.decode(tokens)
        text, cut = cut_at_stop(text, settings.stop)
        return Completion(text, result.prompt_tokens, count, "stop" if cut else finish, tokens)

    async def _run_stream(self, job: Job) -> None:
        loop = asyncio.get_running_loop()
        settings = replace(job.settings, max_time=max(0.001, job.deadline - time.monotonic()))
        assert job.pieces is not None

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(job.pieces.put_nowait, (kind, value))

        def work() -> None:
            generator = self.engine.stream(job.messages, job.images, settings)
            try:
                while True:
                    if job.cancelled:
                        generator.close()  # stops the generation at the next token
                        return
                    put("piece", next(generator))
            except StopIteration as stop:
                put("done", stop.value)
            except ValueError as exc:
                put("error", APIError(400, _one_line(exc), code="invalid_request"))
            except Exception as exc:  # noqa: BLE001 - sent to the client as an error event
                put("error", APIError(500, f"generation failed ({type(exc).__name__}: {_one_line(exc)})"))

        self._running = 1
        try:
            await asyncio.to_thread(work)
        finally:
            self._running = 0


def _fail(job: Job, error: APIError) -> None:
    if job.future is not None and not job.future.done():
        if job.cancelled:
            job.future.cancel()  # nobody waits for it any more
        else:
            job.future.set_exception(error)
    elif job.pieces is not None:
        job.pieces.put_nowait(("error", error))


def _timeout() -> APIError:
    return APIError(504, "the request timed out before its answer was complete", code="timeout")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
