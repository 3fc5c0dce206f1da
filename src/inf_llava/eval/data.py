"""From ``--data`` to evaluation samples: find the files (or the hub dataset), read them, check every row, drop the
rows that are not part of the benchmark (saying so), key each sample and open its images on demand.

``--data`` may be a file (``.tsv``, ``.parquet``, ``.arrow``, ``.jsonl``, ``.json``), a folder (a benchmark's
official layout, a ``save_to_disk`` folder, or a hub snapshot, from which the split's files are picked), or a hub
dataset id such as ``lmms-lab/MMBench``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..errors import DataError, ImageError
from ..images import DEFAULT_MAX_PIXELS, load_image
from .base import Benchmark, RawRow
from .formats import READERS, LazyCell, iter_files, read_hub, read_saved_dataset

_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_TOKEN_SPLIT = re.compile(r"[-_.]")


@dataclass
class Sample:
    """One row to evaluate: its key (unique in the dataset), the row itself, and its images (references)."""

    key: str
    doc: dict[str, Any]
    origin: str
    image_refs: list[Any]
    base_dir: Path | None = None

    def images(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
        return open_images(self.image_refs, self.base_dir, self.origin, max_pixels)


@dataclass
class EvalData:
    benchmark: Benchmark
    source: str
    samples: list[Sample]
    notes: list[str] = field(default_factory=list)

    def by_key(self) -> dict[str, Sample]:
        return {s.key: s for s in self.samples}


def load_eval_data(
    benchmark: Benchmark,
    data: str | Path,
    *,
    split: str | None = None,
    image_root: str | Path | None = None,
    limit: int | None = None,
) -> EvalData:
    """Read, check and key the benchmark's rows from ``data`` (see the module docstring)."""
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    root = Path(image_root) if image_root is not None else None
    if root is not None and not root.is_dir():
        raise DataError(f"--image-root {root}: no such directory")
    path = Path(data).expanduser()
    notes: list[str] = []
    if not path.exists():
        if not _HUB_ID.match(str(data)):
            raise DataError(f"{data}: no such file or directory")
        hub = benchmark.hub  # mirrors (e.g. lmms-lab-encoder/...) use the same config names
        rows = read_hub(str(data), hub.config, split or hub.split)
    else:
        official = benchmark.load_official(path, split=split, image_root=root)
        if official is not None:
            rows, notes = official.rows, list(official.notes)
        elif path.is_dir() and (path / "state.json").is_file():
            rows = read_saved_dataset(path)
        elif path.is_dir():
            files = select_files(path, benchmark, split, notes)
            rows = [row for file in files for row in READERS[file.suffix](file)]
        elif path.suffix in READERS:
            rows = READERS[path.suffix](path)
        else:
            raise DataError(f"{path}: unsupported file type (expected one of {', '.join(sorted(READERS))})")
        if root is not None and official is None:
            for row in rows:
                row.base_dir = root
    samples = _samples(benchmark, rows, notes)
    if limit is not None and limit < len(samples):
        notes.append(f"--limit {limit}: evaluating the first {limit} of {len(samples)} samples")
        samples = samples[:limit]
    return EvalData(benchmark, str(data), samples, notes)


def select_files(folder: Path, benchmark: Benchmark, split: str | None, notes: list[str]) -> list[Path]:
    """The files of one split (and config) in a folder such as a hub snapshot.

    A file belongs to split ``s`` when ``s`` is one of its folder names or a ``-``/``_``/``.``-separated token of
    its name (``dev-00000-of-00001.parquet``, ``MMBench_DEV_EN.tsv``), compared case-insensitively.
    """
    files = list(iter_files(folder))
    if not files:
        raise DataError(f"{folder}: no data files ({', '.join(sorted(READERS))}) inside")
    wanted = split or benchmark.hub.split
    chosen = [f for f in files if wanted.lower() in _tokens(folder, f)]
    if not chosen:
        if split is not None:
            raise DataError(f"{folder}: no file for split {split!r} among {', '.join(_names(folder, files))}")
        chosen = files
        if len(files) > 1:
            notes.append(f"no file is named for split {wanted!r}: reading all {len(files)} files")
    config = benchmark.hub.config
    if config is not None and len(chosen) > 1:
        narrowed = [f for f in chosen if config.lower() in _tokens(folder, f)]
        chosen = narrowed or chosen
    suffixes = {f.suffix for f in chosen}
    if len(suffixes) > 1:
        raise DataError(
            f"{folder}: mixed file types for one split ({', '.join(_names(folder, chosen))}); pass one file"
        )
    return chosen


def _tokens(folder: Path, file: Path) -> set[str]:
    relative = file.relative_to(folder)
    tokens = {part.lower() for part in relative.parts[:-1]}
    tokens.update(t.lower() for t in _TOKEN_SPLIT.split(file.stem) if t)
    return tokens


def _names(folder: Path, files: Sequence[Path]) -> list[str]:
    return [str(f.relative_to(folder)) for f in files[:8]] + (["..."] if len(files) > 8 else [])


def _samples(benchmark: Benchmark, rows: Sequence[RawRow], notes: list[str]) -> list[Sample]:
    if not rows:
        raise DataError(f"no rows found for {benchmark.title}")
    ids = []
    for row in rows:
        try:
            benchmark.check_doc(row.doc)
            ids.append(benchmark.doc_id(row.doc))
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{row.origin}: {exc}") from None
    with_id = [i is not None for i in ids]
    if any(with_id) and not all(with_id):
        missing = rows[with_id.index(False)]
        raise DataError(f"{missing.origin}: no {benchmark.id_field!r} while other rows have one")
    keys = ids if all(with_id) else [str(number) for number in range(len(rows))]
    seen: dict[str, str] = {}
    samples = []
    skipped = 0
    for key, row in zip(keys, rows):
        assert key is not None
        if key in seen:
            raise DataError(f"{row.origin}: duplicate id {key!r} (first at {seen[key]})")
        seen[key] = row.origin
        if not benchmark.include(row.doc):
            skipped += 1
            continue
        try:
            refs = row.images if row.images is not None else benchmark.image_refs(row.doc)
        except (ValueError, KeyError) as exc:
            raise DataError(f"{row.origin}: {exc}") from None
        samples.append(Sample(key, row.doc, row.origin, list(refs), row.base_dir))
    if skipped:
        notes.append(benchmark.excluded_note(skipped))
    if not samples:
        raise DataError(f"none of the {len(rows)} rows belongs to {benchmark.title}")
    return samples


# ---- images ------------------------------------------------------------------------------------------------------
def open_images(
    refs: Sequence[Any], base_dir: Path | None, label: str, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> list[Image.Image]:
    """Decode image references: PIL images, bytes, ``{"bytes", "path"}`` structs, file names (relative to
    ``base_dir``), base64 strings, lazy cells and lists of these. Errors name the sample."""
    images = []
    for ref in refs:
        value = ref.resolve() if isinstance(ref, LazyCell) else ref
        if isinstance(value, (list, tuple)):
            images.extend(open_images(value, base_dir, label, max_pixels))
            continue
        images.append(_open_one(value, base_dir, label, max_pixels).convert("RGB"))
    return images


def _open_one(value: Any, base_dir: Path | None, label: str, max_pixels: int | None) -> Image.Image:
    name = f"{label}: image"
    if value is None:
        raise ImageError(f"{name} is missing")
    if isinstance(value, Image.Image):
        return load_image(value, max_pixels=max_pixels, name=name)
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return load_image(value["bytes"], max_pixels=max_pixels, name=name)
        if value.get("path"):
            return _open_path(str(value["path"]), base_dir, name, max_pixels)
        raise ImageError(f"{name} has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return load_image(bytes(value), max_pixels=max_pixels, name=name)
    if isinstance(value, str):
        if len(value) < 1024:
            candidate = _find_path(value, base_dir)
            if candidate is not None:
                return load_image(candidate, max_pixels=max_pixels, name=f"{name} {candidate}")
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(value) >= 64 and decoded:
            return load_image(decoded, max_pixels=max_pixels, name=f"{name} (base64)")
        where = f" under {base_dir}" if base_dir is not None else ""
        raise ImageError(f"{name} {value[:80]!r} is neither a file{where} nor base64 data")
    raise ImageError(f"{name} has an unsupported type {type(value).__name__}")


def _find_path(value: str, base_dir: Path | None) -> Path | None:
    path = Path(value).expanduser()
    for candidate in ([path] if path.is_absolute() else []) + ([base_dir / value] if base_dir is not None else []):
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # e.g. a short base64 image: longer than a file name may be
            continue
    return None


def _open_path(value: str, base_dir: Path | None, name: str, max_pixels: int | None) -> Image.Image:
    found = _find_path(value, base_dir)
    if found is None:
        where = f" under {base_dir}" if base_dir is not None else ""
        raise ImageError(f"{name} file {value!r} not found{where}")
    return load_image(found, max_pixels=max_pixels, name=f"{name} {found}")


__all__ = ["EvalData", "Sample", "load_eval_data", "open_images", "select_files"]
