"""The LLaVA data format: reading JSON / JSONL files and validating every record before training starts.

A record is ``{"id": ..., "image": "rel/path.jpg" | ["a.jpg", "b.jpg"] (optional), "conversations": [{"from":
"human" | "gpt" | "system", "value": "..."}, ...]}``, with one ``<image>`` placeholder per image in the human turns.
A ``.json`` file holds a list of records, a ``.jsonl`` file one record per line (the format is sniffed from the first
character, not the file name).

Every problem is reported with its place: ``data.jsonl line 7 (sample 'abc'): <problem>``. JSON lists are decoded
item by item so their errors carry a line number too. The caller decides what an invalid record does (stop the run,
or be skipped and listed); nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..processing.templates import IMAGE_PLACEHOLDER

# LLaVA roles (and the role names of ShareGPT-style files) -> template roles.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True)
class LlavaSample:
    """One validated record.

    Attributes:
        sample_id: the record's ``id`` as text, or None when it has none.
        where: ``"<file> line <n>"``, for messages.
        images: absolute image paths, in placeholder order.
        messages: ``(role, text)`` turns with roles ``system`` / ``user`` / ``assistant``; ``<image>`` kept in text.
    """

    sample_id: str | None
    where: str
    images: tuple[Path, ...]
    messages: tuple[tuple[str, str], ...]

    @property
    def label(self) -> str:
        """How messages name the sample: ``data.jsonl line 7 (sample 'abc')``."""
        return self.where if self.sample_id is None else f"{self.where} (sample {self.sample_id!r})"

    @property
    def has_images(self) -> bool:
        return bool(self.images)

    @property
    def modality_length(self) -> int:
        """Whitespace word count over all turns, positive with images and negative without (spec 13.5)."""
        words = sum(len(text.split()) for _, text in self.messages)
        return words if self.images else -words

    def chat_messages(self) -> list[dict[str, str]]:
        """HF-style ``{"role", "content"}`` messages for :meth:`InfLlavaProcessor.encode_conversation`."""
        return [{"role": role, "content": text} for role, text in self.messages]


@dataclass(frozen=True)
class InvalidRecord:
    """A record that failed validation: where it is, its id (if any) and the one-line reason."""

    where: str
    sample_id: str | None
    reason: str

    @property
    def message(self) -> str:
        label = self.where if self.sample_id is None else f"{self.where} (sample {self.sample_id!r})"
        return f"{label}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "id": self.sample_id, "reason": self.reason}


class RecordError(DataError):
    """A record-level problem; carries the :class:`InvalidRecord` for skip reports."""

    def __init__(self, record: InvalidRecord):
        super().__init__(record.message)
        self.record = record


def iter_records(path: str | os.PathLike) -> Iterator[tuple[str, Any | InvalidRecord]]:
    """Yield ``(where, row)`` for every record of a LLaVA JSON or JSONL file.

    A JSONL line that is not valid JSON is yielded as an :class:`InvalidRecord` (so ``--skip-invalid`` can go on); a
    broken JSON list cannot be resynchronised and raises a DataError naming the line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: no such data file") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    start = len(text) - len(text.lstrip())
    if start == len(text):
        raise DataError(f"{path}: the data file is empty")
    if text[start] == "[":
        yield from _json_list(path, text, start)
    else:
        yield from _json_lines(path, text)


def _json_lines(path: Path, text: str) -> Iterator[tuple[str, Any | InvalidRecord]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = InvalidRecord(where, None, f"invalid JSON ({exc.msg} at column {exc.colno})")
        except RecursionError:
            row = InvalidRecord(where, None, "invalid JSON (nested too deeply)")
        yield where, row


def _json_list(path: Path, text: str, start: int) -> Iterator[tuple[str, Any | InvalidRecord]]:
    """Decode a JSON array one item at a time, tracking the line each item starts on."""
    decoder = json.JSONDecoder()
    pos, line, counted = start + 1, 1, 0
    index = 0
    while True:
        pos = _skip_space(text, pos)
        if pos < len(text) and text[pos] == "]":
            if _skip_space(text, pos + 1) != len(text):
                raise DataError(f"{path}: unexpected text after the closing ']' of the list")
            return
        if index:
            if pos >= len(text) or text[pos] != ",":
                raise DataError(f"{path} line {line + text.count(chr(10), counted, pos)}: expected ',' or ']'")
            pos = _skip_space(text, pos + 1)
        line += text.count("\n", counted, pos)
        counted = pos
        where = f"{path} line {line}"
        try:
            row, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise DataError(f"{where}: invalid JSON (nested too deeply)") from None
        yield where, row
        index += 1


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def parse_record(
    row: Any, where: str, image_folder: str | os.PathLike | None, *, check_files: bool = True
) -> LlavaSample:
    """Validate one record; raises :class:`RecordError` with a one-line reason.

    Checks types, roles (optional system turn first, then human / gpt alternating, ending with gpt), placeholders
    (``<image>`` only in human turns, as many as images) and, with ``check_files``, that every image file exists and
    is not empty.
    """
    if isinstance(row, InvalidRecord):
        raise RecordError(row)
    sample_id = None
    if isinstance(row, dict) and "id" in row:
        raw_id = row["id"]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise RecordError(InvalidRecord(where, None, f"'id' must be a string or an integer, got {_kind(raw_id)}"))
        sample_id = str(raw_id)

    def fail(reason: str) -> RecordError:
        return RecordError(InvalidRecord(where, sample_id, reason))

    if not isinstance(row, dict):
        raise fail(f"expected a JSON object, got {_kind(row)}")
    images = _image_list(row.get("image"), fail)
    if "conversations" not in row:
        raise fail("missing 'conversations'")
    turns = row["conversations"]
    if not isinstance(turns, list):
        raise fail(f"'conversations' must be a list of {{'from', 'value'}} turns, got {_kind(turns)}")
    if not turns:
        raise fail("'conversations' is empty")
    messages = []
    for index, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise fail(f"turn {index} must be an object with 'from' and 'value', got {_kind(turn)}")
        if "from" not in turn or "value" not in turn:
            missing = "'from'" if "from" not in turn else "'value'"
            raise fail(f"turn {index} is missing {missing}")
        speaker, value = turn["from"], turn["value"]
        if not isinstance(speaker, str) or speaker not in ROLES:
            raise fail(f"turn {index}: unknown role {speaker!r} (expected 'human', 'gpt' or 'system')")
        if not isinstance(value, str):
            raise fail(f"turn {index}: 'value' must be a string, got {_kind(value)}")
        messages.append((ROLES[speaker], value, speaker))
    _check_order(messages, fail)
    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for role, text, _ in messages if role == "user")
    for index, (role, text, speaker) in enumerate(messages):
        if role != "user" and IMAGE_PLACEHOLDER in text:
            raise fail(f"turn {index} ({speaker}) contains {IMAGE_PLACEHOLDER}; images belong in human turns")
    if placeholders != len(images):
        raise fail(
            f"{len(images)} image(s) but {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) in the human turns; "
            "they must match"
        )
    paths = tuple(_resolve(image, image_folder, fail, check_files) for image in images)
    return LlavaSample(sample_id, where, paths, tuple((role, text) for role, text, _ in messages))


def _image_list(value: Any, fail) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise fail(f"'image' must be a path or a list of paths, got {_kind(value)}")
    if any(not item.strip() for item in items):
        raise fail("'image' contains an empty path")
    return items


def _check_order(messages: list[tuple[str, str, str]], fail) -> None:
    expected = "user"
    for index, (role, _, speaker) in enumerate(messages):
        if role == "system":
            if index:
                raise fail(f"turn {index}: a system turn is only allowed first")
            continue
        if role != expected:
            want = "human" if expected == "user" else "gpt"
            raise fail(f"roles out of order: turn {index} is {speaker!r}, expected {want!r} (turns must alternate)")
        expected = "assistant" if role == "user" else "user"
    if expected != "user":
        raise fail("the conversation ends with a human turn that has no gpt answer")
    if not any(role == "assistant" for role, _, _ in messages):
        raise fail("the conversation has no gpt turn to learn from")


def _resolve(image: str, folder: str | os.PathLike | None, fail, check_files: bool) -> Path:
    path = Path(image)
    if not path.is_absolute():
        if folder is None:
            raise fail(f"image {image!r} is a relative path but no image folder was given (--image-folder)")
        path = Path(folder) / path
    if check_files:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise fail(f"image file not found: {path}") from None
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            raise fail(f"image file not readable: {path!r} ({getattr(exc, 'strerror', None) or exc})") from None
        if not path.is_file():
            raise fail(f"image path is not a file: {path}")
        if size == 0:
            raise fail(f"image file is empty (0 bytes): {path}")
    return path


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def load_records(
    path: str | os.PathLike,
    image_folder: str | os.PathLike | None,
    *,
    skip_invalid: bool = False,
    check_files: bool = True,
    template: str | None = None,
) -> tuple[list[LlavaSample], list[InvalidRecord]]:
    """Read and validate a whole LLaVA file.

    Returns the valid samples and the invalid records. Without ``skip_invalid`` the first invalid record raises a
    :class:`RecordError`; with it, invalid records are collected (never dropped silently: the caller reports them).
    ``template="plain"`` (stage-1 captioning) also requires exactly one human and one gpt turn.
    """
    samples: list[LlavaSample] = []
    invalid: list[InvalidRecord] = []
    for where, row in iter_records(path):
        try:
            sample = parse_record(row, where, image_folder, check_files=check_files)
            if template == "plain":
                _check_plain(sample)
        except RecordError as exc:
            if not skip_invalid:
                raise
            invalid.append(exc.record)
            continue
        samples.append(sample)
    if not samples:
        detail = f"; first problem: {invalid[0].message}" if invalid else ""
        raise DataError(f"{path}: no valid samples{detail}")
    return samples, invalid


def _check_plain(sample: LlavaSample) -> None:
    roles = [role for role, _ in sample.messages]
    if roles != ["user", "assistant"]:
        raise RecordError(
            InvalidRecord(
                sample.where,
                sample.sample_id,
                f"the plain (stage-1 captioning) template takes one human turn and one gpt turn, got {len(roles)} "
                "turns",
            )
        )
