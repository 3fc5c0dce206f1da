"""JSON Lines in and out, safely: reading names the file and line of any bad row; writing appends whole rows,
flushed and fsynced one at a time, so an interrupted run can resume without losing or duplicating rows."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataError


def read_jsonl(path: str | os.PathLike, *, require_object: bool = True) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, row)`` for every non-blank line; a malformed line raises a one-line DataError."""
    path = Path(path)
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: cannot open ({exc.strerror or exc})") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {number}: invalid JSON ({exc.msg} at column {exc.colno})") from None
            if require_object and not isinstance(row, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {type(row).__name__}")
            yield number, row


def completed_keys(path: str | os.PathLike, key: str = "id") -> set[Any]:
    """Keys already present in an output JSONL file. A torn last line (from a crash mid-write) is ignored and
    removed, so the resumed run rewrites that row."""
    path = Path(path)
    if not path.exists():
        return set()
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        # The last row was being written when the process died: drop the partial line.
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(cut)
        data = data[:cut]
    keys = set()
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {number}: invalid JSON in existing output ({exc.msg})") from None
        if isinstance(row, dict) and key in row:
            keys.add(row[key])
    return keys


class JsonlAppender:
    """Append rows to a JSONL file, one durable write per row (flush + fsync)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a whole file atomically (temporary file in the same directory, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
