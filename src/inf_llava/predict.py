"""Batch prediction over a JSONL file of questions: the library behind ``inf-llava predict``.

Input rows are ``{"id": str | int, "image": path | null, "question": str}`` (other keys are ignored; a relative image
path is resolved against ``image_root``, by default the input file's folder). Output rows are
``{"id", "question", "answer", "finish_reason", "prompt_tokens", "completion_tokens"}``, in input order.

Failure policy (decided once, here):

- a malformed *file* (bad JSON, a missing or mistyped key, an empty question, a duplicate id) stops the run before any
  generation with one :class:`~inf_llava.errors.DataError` naming the file, line and id: the input needs fixing;
- a bad *sample* (missing, corrupt or oversized image; a prompt longer than the context) does not stop a long run:
  its output row carries ``"answer": null`` and ``"error": "<reason>"``, each one is reported on stderr, and the
  summary counts them (the CLI then exits with status 1). Nothing is dropped silently.

Rows are appended and fsynced one at a time (:class:`~inf_llava.jsonl.JsonlAppender`), so a run that is killed
resumes by skipping the ids already in the output: no row is lost or written twice. Generation is batched with left
padding; greedy batches give the same answers as batch size 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError, ImageError
from .images import DEFAULT_MAX_PIXELS, load_image
from .inference import GenerationSettings, InfLlavaEngine
from .jsonl import JsonlAppender, completed_keys, read_jsonl


@dataclass(frozen=True)
class Question:
    line: int
    id: str | int
    image: Path | None
    question: str


@dataclass
class PredictSummary:
    total: int = 0  # questions in the input
    skipped: int = 0  # already answered in the output (resume)
    answered: int = 0
    failed: int = 0  # rows written with an "error"


def read_questions(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> list[Question]:
    """Validate the whole input file up front; raises :class:`DataError` naming the file, line and id."""
    path = Path(path)
    root = Path(image_root) if image_root is not None else path.parent
    questions: list[Question] = []
    seen: dict[Any, int] = {}
    for line, row in read_jsonl(path):
        sample = row.get("id")
        where = f"{path} line {line}" + (f" (id {sample!r})" if sample is not None else "")
        if "id" not in row:
            raise DataError(f"{where}: missing key 'id'")
        if isinstance(sample, bool) or not isinstance(sample, (str, int)):
            raise DataError(f"{where}: 'id' must be a string or an integer, got {type(sample).__name__}")
        if sample in seen:
            raise DataError(f"{where}: duplicate id (first on line {seen[sample]})")
        seen[sample] = line
        question = row.get("question")
        if "question" not in row:
            raise DataError(f"{where}: missing key 'question'")
        if not isinstance(question, str):
            raise DataError(f"{where}: 'question' must be a string, got {type(question).__name__}")
        if not question.strip():
            raise DataError(f"{where}: empty question")
        image = row.get("image")
        if image is not None and (not isinstance(image, str) or not image.strip()):
            raise DataError(f"{where}: 'image' must be a path string or null, got {image!r}")
        questions.append(Question(line, sample, root / image if image else None, question))
    return questions


def predict(
    engine: InfLlavaEngine,
    questions: Sequence[Question],
    output: str | os.PathLike,
    *,
    batch_size: int = 8,
    settings: GenerationSettings | None = None,
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
    on_error: Callable[[Question, str], None] | None = None,
    progress: bool | None = None,
) -> PredictSummary:
    """Answer every question not yet in ``output`` and append the rows (see the module doc for the policy).

    ``on_error(question, message)`` is called for each failed sample; ``progress`` shows a tqdm bar (``None``: only
    on a terminal).
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    settings = settings or GenerationSettings()
    done = completed_keys(output, "id")
    pending = [q for q in questions if q.id not in done]
    summary = PredictSummary(total=len(questions), skipped=len(questions) - len(pending))
    with (
        JsonlAppender(output) as out,
        tqdm(total=len(pending), desc="predict", unit="q", disable=None if progress is None else not progress) as bar,
    ):
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            for question, row in zip(batch, _answer_batch(engine, batch, settings, max_image_pixels)):
                if "error" in row:
                    summary.failed += 1
                    if on_error is not None:
                        on_error(question, row["error"])
                else:
                    summary.answered += 1
                out.write(row)
            bar.update(len(batch))
    return summary


def _answer_batch(
    engine: InfLlavaEngine, batch: Sequence[Question], settings: GenerationSettings, max_pixels: int | None
) -> list[dict[str, Any]]:
    """Rows for one batch, in order: answers for the samples that can run, error rows for the others."""
    rows: list[dict[str, Any] | None] = [None] * len(batch)
    ready: list[tuple[int, list[dict[str, Any]], list[Any]]] = []
    for index, question in enumerate(batch):
        try:
            images = [load_image(question.image, max_pixels=max_pixels)] if question.image else []
            messages = engine.question(question.question, with_image=bool(images))
            _check_sample(engine, messages, len(images))
            ready.append((index, messages, images))
        except (ImageError, ValueError) as exc:
            rows[index] = _error_row(question, exc)
    if ready:
        try:
            results = engine.complete([m for _, m, _ in ready], [i for _, _, i in ready], settings)
        except ValueError:
            # Something about one sample that the checks above did not catch: isolate it, answer the rest alone.
            results = []
            for _, messages, images in ready:
                try:
                    results.extend(engine.complete([messages], [images], settings))
                except ValueError as exc:
                    results.append(exc)
        for (index, _, _), result in zip(ready, results):
            if isinstance(result, Exception):
                rows[index] = _error_row(batch[index], result)
            else:
                rows[index] = {
                    "id": batch[index].id,
                    "question": batch[index].question,
                    "answer": result.text,
                    "finish_reason": result.finish_reason,
                    "prompt_tokens": result.prompt_tokens,
                    "completion_tokens": result.completion_tokens,
                }
    return rows  # type: ignore[return-value]


def _check_sample(engine: InfLlavaEngine, messages: Sequence[Any], n_images: int) -> None:
    prompt = engine.prompt(messages)
    placeholders = prompt.count(engine.processor.image_placeholder)
    if placeholders != n_images:
        raise ValueError(
            f"the prompt has {placeholders} {engine.processor.image_placeholder} placeholder(s) for {n_images} "
            "image(s); remove literal image markers from the question"
        )
    length, context = engine.prompt_length(messages), engine.context_length
    if context is not None and length >= context:
        raise ValueError(f"the prompt is {length} tokens, the model's context is {context} (image slots included)")


def _error_row(question: Question, exc: BaseException) -> dict[str, Any]:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return {"id": question.id, "question": question.question, "answer": None, "error": message}


__all__ = ["PredictSummary", "Question", "predict", "read_questions"]
