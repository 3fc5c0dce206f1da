"""Readers for the formats the benchmarks are distributed in, each turning a file into :class:`RawRow` s.

- TSV (OpenCompass / VLMEvalKit, e.g. ``MMBench_DEV_EN.tsv``): base64 images; a short ``image`` cell holds the
  ``index`` of the row whose image it shares (circular copies), as VLMEvalKit writes them.
- Parquet (the HF hub releases) and Arrow (``datasets`` cache files and ``save_to_disk`` folders): image columns
  (structs with ``bytes`` / ``path``, or lists of them) are *not* loaded with the rows; each cell becomes a
  :class:`LazyCell` read on demand, so a multi-gigabyte release never sits in memory at once.
- JSON / JSONL: a list of rows (image fields are file names relative to the file, or base64).
- The hub, through ``datasets.load_dataset`` (needs the ``eval`` extra and a network).
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..jsonl import read_jsonl
from .base import RawRow

# VLMEvalKit stores the image of a circular copy as the index of the row that carries it (a short string).
_IMAGE_REFERENCE_MAX_LEN = 64


class LazyCell:
    """A cell of an image column, fetched only when the image is needed."""

    __slots__ = ("_fetch", "label")

    def __init__(self, fetch: Callable[[], Any], label: str):
        self._fetch = fetch
        self.label = label

    def resolve(self) -> Any:
        return self._fetch()

    def __repr__(self) -> str:
        return f"<image cell {self.label}>"


# ---- TSV ---------------------------------------------------------------------------------------------------------
def read_tsv(path: Path) -> list[RawRow]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: not a readable TSV ({' '.join(str(exc).split())})") from None
    records = [
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    if "index" in frame.columns:
        for number, record in enumerate(records):
            try:
                record["index"] = int(float(record["index"]))
            except (TypeError, ValueError):
                raise DataError(f"{path} row {number + 1}: index {record['index']!r} is not an integer") from None
    if "image" in frame.columns:
        _resolve_shared_images(path, records)
    return [RawRow(record, f"{path} row {number + 1}", base_dir=path.parent) for number, record in enumerate(records)]


def _resolve_shared_images(path: Path, records: list[dict[str, Any]]) -> None:
    by_index = {str(r.get("index")): r.get("image") for r in records}
    for number, record in enumerate(records):
        image = record.get("image")
        if isinstance(image, str) and image.isdigit() and image not in by_index:
            raise DataError(f"{path} row {number + 1}: image refers to index {image}, which is not in the file")
        if isinstance(image, str) and len(image) <= _IMAGE_REFERENCE_MAX_LEN and image in by_index:
            target = by_index[image]
            if not isinstance(target, str) or len(target) <= _IMAGE_REFERENCE_MAX_LEN:
                raise DataError(f"{path} row {number + 1}: image refers to index {image} which holds no image")
            record["image"] = target
        elif isinstance(image, str) and image.startswith("["):
            try:
                record["image"] = list(ast.literal_eval(image))  # several base64 images in one cell
            except (ValueError, SyntaxError):
                pass


# ---- Arrow / Parquet ---------------------------------------------------------------------------------------------
def _is_image_type(arrow_type: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_struct(arrow_type):
        return arrow_type.get_field_index("bytes") != -1
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return _is_image_type(arrow_type.value_type)
    return False


def image_columns(schema: Any) -> list[str]:
    return [field.name for field in schema if _is_image_type(field.type)]


def rows_from_table(table: Any, label: str, base_dir: Path | None) -> list[RawRow]:
    """Rows of an in-memory or memory-mapped Arrow table; image cells stay lazy (zero-copy slices)."""
    images = image_columns(table.schema)
    plain = table.drop_columns(images) if images else table
    docs = plain.to_pylist()
    nulls = {name: table.column(name).is_null().to_pylist() for name in images}
    for name in images:
        column = table.column(name)
        for index, doc in enumerate(docs):
            doc[name] = None if nulls[name][index] else LazyCell(_arrow_cell(column, index), f"{label} row {index + 1}")
    return [RawRow(doc, f"{label} row {number + 1}", base_dir=base_dir) for number, doc in enumerate(docs)]


def _arrow_cell(column: Any, index: int) -> Callable[[], Any]:
    return lambda: column[index].as_py()


def read_arrow(path: Path) -> list[RawRow]:
    """An Arrow IPC file (stream format, as ``datasets`` writes, or file format), memory-mapped."""
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path), "r")
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source = pa.memory_map(str(path), "r")
            table = pa.ipc.open_file(source).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Arrow file ({' '.join(str(exc).split())})") from None
    return rows_from_table(table, str(path), path.parent)


class _RowGroupCache:
    """Reads one row group of one image column at a time: sequential access reads each group once."""

    def __init__(self, parquet_file: Any):
        self.file = parquet_file
        self.key: tuple[int, str] | None = None
        self.values: list[Any] = []

    def get(self, group: int, column: str, offset: int) -> Any:
        if self.key != (group, column):
            self.values = self.file.read_row_group(group, columns=[column]).column(0).to_pylist()
            self.key = (group, column)
        return self.values[offset]


def read_parquet(path: Path) -> list[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(str(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())})") from None
    schema = parquet.schema_arrow
    images = image_columns(schema)
    plain = [name for name in schema.names if name not in images]
    cache = _RowGroupCache(parquet)
    rows: list[RawRow] = []
    for group in range(parquet.num_row_groups):
        docs = parquet.read_row_group(group, columns=plain).to_pylist()
        for name in images:
            nulls = parquet.read_row_group(group, columns=[name]).column(0).is_null().to_pylist()
            for offset, doc in enumerate(docs):
                label = f"{path} row {len(rows) + offset + 1}"
                doc[name] = None if nulls[offset] else LazyCell(_parquet_cell(cache, group, name, offset), label)
        rows.extend(RawRow(doc, f"{path} row {len(rows) + i + 1}", base_dir=path.parent) for i, doc in enumerate(docs))
    return rows


def _parquet_cell(cache: _RowGroupCache, group: int, column: str, offset: int) -> Callable[[], Any]:
    return lambda: cache.get(group, column, offset)


def read_saved_dataset(folder: Path) -> list[RawRow]:
    """A ``datasets`` ``save_to_disk`` folder: its Arrow shards in the order ``state.json`` lists them."""
    state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    rows: list[RawRow] = []
    for entry in state.get("_data_files", []):
        part = read_arrow(folder / entry["filename"])
        for row in part:
            row.origin = f"{folder} row {len(rows) + 1}"
            rows.append(row)
    return rows


# ---- JSON --------------------------------------------------------------------------------------------------------
def read_jsonl_rows(path: Path) -> list[RawRow]:
    return [RawRow(row, f"{path} line {number}", base_dir=path.parent) for number, row in read_jsonl(path)]


def read_json_rows(path: Path) -> list[RawRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise DataError(f"{path}: expected a list of rows (or an object holding exactly one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows")
    rows = []
    for number, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path} item {number}: expected an object, got {type(row).__name__}")
        rows.append(RawRow(row, f"{path} item {number}", base_dir=path.parent))
    return rows


READERS: dict[str, Callable[[Path], list[RawRow]]] = {
    ".tsv": read_tsv,
    ".parquet": read_parquet,
    ".arrow": read_arrow,
    ".jsonl": read_jsonl_rows,
    ".json": read_json_rows,
}


# ---- the hub -----------------------------------------------------------------------------------------------------
def read_hub(repo: str, config: str | None, split: str) -> list[RawRow]:
    """``datasets.load_dataset(repo, config, split=split)``; its memory-mapped table keeps images lazy."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(f"loading {repo} from the hub needs the 'datasets' package ({exc})") from None
    try:
        dataset = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # noqa: BLE001 - network, auth and offline failures all become one line
        message = " ".join(str(exc).split())[:300]
        raise DataError(f"cannot load {repo} (config {config}, split {split}) from the hub: {message}") from None
    table = dataset.data.table if hasattr(dataset.data, "table") else dataset.data
    return rows_from_table(table, f"{repo}[{split}]", None)


def iter_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and path.suffix in READERS and not hidden:
            yield path


__all__ = [
    "READERS",
    "LazyCell",
    "image_columns",
    "iter_files",
    "read_arrow",
    "read_hub",
    "read_json_rows",
    "read_jsonl_rows",
    "read_parquet",
    "read_saved_dataset",
    "read_tsv",
    "rows_from_table",
]
