"""An incremental safetensors writer: tensors arrive one at a time, shards are flushed as they fill.

The converter never holds more than one output shard (plus the tensor being added) in memory. Shards are written as
``model-00001.safetensors``, ... and renamed to the transformers names ``model-00001-of-0000N.safetensors`` once the
count is known; one shard is simply ``model.safetensors``. The index (``model.safetensors.index.json``) is what
``from_pretrained`` reads for sharded checkpoints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

INDEX_NAME = "model.safetensors.index.json"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B)?\s*$", re.IGNORECASE)
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(size: int | str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"512MiB"`` -> 536_870_912; ints pass through."""
    if isinstance(size, int):
        value = size
    else:
        match = _SIZE.match(str(size))
        if not match or (match.group(2) or "B").upper() not in _UNITS:
            raise ValueError(f"not a size: {size!r} (examples: 5GB, 500MB, 2GiB)")
        value = int(float(match.group(1)) * _UNITS[(match.group(2) or "B").upper()])
    if value < 1:
        raise ValueError(f"the shard size must be positive, got {size!r}")
    return value


class ShardedSafetensorsWriter:
    """Collects tensors and writes them to shards of at most ``max_shard_bytes`` (a larger tensor gets its own).

    Args:
        directory: where the shards go (must exist).
        max_shard_bytes: shard size limit.
        metadata: extra ``metadata`` entries of the index.
    """

    def __init__(self, directory: Path, max_shard_bytes: int, metadata: dict[str, str] | None = None):
        self.directory = Path(directory)
        self.max_shard_bytes = max_shard_bytes
        self.metadata = dict(metadata or {})
        self._buffer: dict[str, torch.Tensor] = {}
        self._buffer_bytes = 0
        self._shards: list[tuple[Path, list[str]]] = []
        self.total_bytes = 0
        self.total_parameters = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        if name in self._buffer or any(name in names for _, names in self._shards):
            raise ValueError(f"tensor {name!r} written twice")
        nbytes = tensor.numel() * tensor.element_size()
        if self._buffer and self._buffer_bytes + nbytes > self.max_shard_bytes:
            self._flush()
        # A private, contiguous copy: safetensors refuses views that share storage with other tensors.
        if not tensor.is_contiguous() or tensor.untyped_storage().nbytes() != nbytes:
            tensor = tensor.contiguous().clone()
        self._buffer[name] = tensor
        self._buffer_bytes += nbytes
        self.total_bytes += nbytes
        self.total_parameters += tensor.numel()

    def _flush(self) -> None:
        path = self.directory / f"model-{len(self._shards) + 1:05d}.safetensors"
        save_file(self._buffer, str(path), metadata={"format": "pt"})
        self._shards.append((path, list(self._buffer)))
        self._buffer = {}
        self._buffer_bytes = 0

    def close(self) -> list[Path]:
        """Flush the last shard, give the shards their final names, write the index; returns the files."""
        if self._buffer or not self._shards:
            self._flush()
        count = len(self._shards)
        if count == 1:
            final = self.directory / "model.safetensors"
            self._shards[0][0].rename(final)
            return [final]
        weight_map, files = {}, []
        for number, (path, names) in enumerate(self._shards, start=1):
            final = self.directory / f"model-{number:05d}-of-{count:05d}.safetensors"
            path.rename(final)
            files.append(final)
            weight_map.update(dict.fromkeys(names, final.name))
        index = {
            "metadata": {"total_size": self.total_bytes, "total_parameters": self.total_parameters, **self.metadata},
            "weight_map": dict(sorted(weight_map.items())),
        }
        (self.directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
        return files
