"""Reading foreign checkpoints tensor by tensor: local directories or hub ids, safetensors or ``.bin``, single files
or shards listed by an index.

Why not ``from_pretrained``: a released INF-LLaVA checkpoint is a ``llava_llama`` model that transformers does not
know, and its CLIP tower may live in another repository. The converter needs the keys and shapes of every file before
reading any data (to fail before writing gigabytes), then one tensor at a time (so memory stays near one shard).
Safetensors headers give shapes without reading data; ``.bin`` files are opened with ``torch.load(weights_only=True,
mmap=True)``, so a pickle that references anything but tensors is refused and the data stays on disk until used.
"""

from __future__ import annotations

import json
import math
import pickle
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import ModelLoadError

SAFETENSORS_INDEX = "model.safetensors.index.json"
SAFETENSORS_SINGLE = "model.safetensors"
BIN_INDEX = "pytorch_model.bin.index.json"
BIN_SINGLE = "pytorch_model.bin"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def is_repo_id(name: str) -> bool:
    """``owner/name``: what the hub accepts as a repository id (and a relative path rarely looks like)."""
    return bool(_REPO_ID.match(name))


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape and dtype of one stored tensor, and the file holding it."""

    name: str
    file: Path
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def resolve_directory(
    name_or_path: str | Path,
    *,
    allow_patterns: Sequence[str] | None = None,
    what: str = "checkpoint",
    **hub_kwargs,
) -> Path:
    """A local directory as is, or the local snapshot of a hub repository (downloaded unless offline/cached).

    Raises ModelLoadError naming ``name_or_path`` when neither works.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{name_or_path}: the {what} must be a directory, not a file")
    if not is_repo_id(str(name_or_path)):
        raise ModelLoadError(f"{name_or_path}: no such {what} directory (and not a hub id of the form owner/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), allow_patterns=allow_patterns, **hub_kwargs))
    except Exception as exc:  # offline without a cached copy, unknown repository, network errors
        detail = " ".join(str(exc).split())[:300]
        raise ModelLoadError(
            f"{name_or_path}: not a local directory, and the hub repository is not available "
            f"({type(exc).__name__}: {detail})"
        ) from None


class WeightFiles:
    """The weight files of one checkpoint directory, in index order.

    Args:
        directory: the checkpoint directory.
        files: its weight files (all safetensors or all ``.bin``).
        index: the key -> file map of a sharded checkpoint's index (None for a single file).
    """

    def __init__(self, directory: Path, files: list[Path], index: dict[str, str] | None = None):
        self.directory = directory
        self.files = files
        self.index = index

    @property
    def format(self) -> str:
        return "safetensors" if self.files[0].suffix == ".safetensors" else "bin"

    @classmethod
    def find(cls, directory: Path) -> WeightFiles | None:
        """The checkpoint's weights, safetensors preferred; None if the directory holds none."""
        for index_name, single in ((SAFETENSORS_INDEX, SAFETENSORS_SINGLE), (BIN_INDEX, BIN_SINGLE)):
            index_path = directory / index_name
            if index_path.is_file():
                return cls._from_index(directory, index_path)
            if (directory / single).is_file():
                return cls(directory, [directory / single])
        return None

    @classmethod
    def _from_index(cls, directory: Path, index_path: Path) -> WeightFiles:
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("weight_map must map tensor names to file names")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{index_path}: not a valid weight index ({type(exc).__name__}: {exc})") from None
        files = []
        for name in dict.fromkeys(weight_map.values()):
            file = directory / name
            if Path(name).name != name or not file.is_file():
                raise ModelLoadError(f"{index_path}: lists the shard {name!r}, which is not in {directory}")
            files.append(file)
        if not files:
            raise ModelLoadError(f"{index_path}: the index lists no weight files")
        return cls(directory, files, weight_map)

    # ---- reading -------------------------------------------------------------------------------------------------
    def tensor_infos(self) -> Iterator[TensorInfo]:
        """Name, shape and dtype of every tensor, file by file, without reading tensor data.

        Checks the index against the files: a key listed for one file but stored in another (or nowhere) is an
        error naming both.
        """
        seen: dict[str, Path] = {}
        for file in self.files:
            for info in _file_infos(file):
                if info.name in seen:
                    raise ModelLoadError(f"{file}: tensor {info.name!r} is also stored in {seen[info.name].name}")
                listed = None if self.index is None else self.index.get(info.name)
                if self.index is not None and listed != file.name:
                    where = f"lists it in {listed}" if listed else "does not list it"
                    raise ModelLoadError(f"{file}: holds tensor {info.name!r} but the index {where}")
                seen[info.name] = file
                yield info
        if self.index is not None:
            absent = sorted(set(self.index) - set(seen))
            if absent:
                raise ModelLoadError(
                    f"{self.directory / self.index[absent[0]]}: the index lists {absent[0]!r} "
                    f"({len(absent)} tensor(s) in all) but the file does not hold it"
                )

    def read(self, file: Path, names: Sequence[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """The tensors ``names`` of ``file``, one at a time, in the given order."""
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt") as handle:
                for name in names:
                    yield name, handle.get_tensor(name)
        else:
            state = load_bin(file)
            for name in names:
                yield name, state[name]
            del state


def _file_infos(file: Path) -> Iterator[TensorInfo]:
    if file.suffix == ".safetensors":
        try:
            with safe_open(str(file), framework="pt") as handle:
                names = list(handle.keys())
                infos = []
                for name in names:
                    piece = handle.get_slice(name)
                    dtype = _SAFETENSORS_DTYPES.get(piece.get_dtype())
                    if dtype is None:
                        raise ModelLoadError(f"{file}: tensor {name!r} has unsupported dtype {piece.get_dtype()}")
                    infos.append(TensorInfo(name, file, tuple(piece.get_shape()), dtype))
        except ModelLoadError:
            raise
        except Exception as exc:  # truncated or corrupt header
            raise ModelLoadError(f"{file}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None
        yield from infos
    else:
        state = load_bin(file)
        for name, tensor in state.items():
            yield TensorInfo(name, file, tuple(tensor.shape), tensor.dtype)
        del state


def load_bin(file: Path) -> dict[str, torch.Tensor]:
    """A ``.bin`` state dict, memory-mapped, with ``weights_only=True``: only tensors and plain containers load."""
    try:
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(file, map_location="cpu", weights_only=True)  # legacy (non-zip) serialisation
    except pickle.UnpicklingError as exc:
        raise ModelLoadError(
            f"{file}: refused to load: not a plain tensor pickle ({_unpickling_reason(exc)}); "
            "only tensor state dicts are read (weights_only=True)"
        ) from None
    except Exception as exc:
        raise ModelLoadError(f"{file}: not a loadable torch checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelLoadError(f"{file}: expected a dict of named tensors, got {type(state).__name__}")
    return state


def _unpickling_reason(exc: Exception) -> str:
    """The informative part of torch's weights-only refusal (e.g. "Unsupported global: GLOBAL getattr ...")."""
    text = str(exc).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        lines = [line.strip() for line in text.split(marker, 1)[1].splitlines() if line.strip()]
        if lines:
            return lines[0].split(". Please use")[0][:200]
    return text.splitlines()[0][:200] if text else type(exc).__name__
