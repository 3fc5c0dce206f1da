"""The official stage-1 adapter file, ``mm_projector.bin`` (spec 12.3).

It is a ``torch.save`` dict of 24 tensors (bf16 in the releases): ``model.mm_projector.{0,2}.{weight,bias}`` and the
20 ``model.spatial_embed.*`` DEM tensors. Loading uses ``weights_only=True`` (no arbitrary pickles) and is strict:
every projector and DEM parameter must be present and no other key may appear.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import ModelLoadError
from .checkpoint import is_repo_id, load_bin, resolve_directory
from .keys import OFFICIAL_DEM_PREFIX, OFFICIAL_PROJECTOR_PREFIX, dem_key_to_official, dem_key_to_package

ADAPTER_NAME = "mm_projector.bin"


def adapter_state_dict(model, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """The projector and DEM of ``model`` under the official adapter key names, cast to ``dtype``, on CPU."""
    encoder = model.model.image_encoder
    out = {}
    for name, tensor in encoder.projector.state_dict().items():
        out[OFFICIAL_PROJECTOR_PREFIX + name] = tensor.detach().to("cpu", dtype).clone()
    if encoder.dem is not None:  # ablation variants without a DEM export the projector alone
        for name, tensor in encoder.dem.state_dict().items():
            out[OFFICIAL_DEM_PREFIX + dem_key_to_official(name)] = tensor.detach().to("cpu", dtype).clone()
    return out


def save_official_adapter(model, path: str | os.PathLike, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write ``mm_projector.bin`` in the official layout (atomically: temporary file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(adapter_state_dict(model, dtype), tmp)
    os.replace(tmp, path)
    return path


def resolve_adapter_file(name_or_path: str | os.PathLike, **hub_kwargs) -> Path:
    """The adapter file itself, ``mm_projector.bin`` inside a directory (e.g. a stage-1 output or the released
    ``INF-LLaVA-pretrain``), or that file of a hub repository."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        if (path / ADAPTER_NAME).is_file():
            return path / ADAPTER_NAME
        raise ModelLoadError(f"{path}: no {ADAPTER_NAME} in this directory")
    if is_repo_id(str(name_or_path)):
        directory = resolve_directory(name_or_path, allow_patterns=[ADAPTER_NAME], what="adapter", **hub_kwargs)
        if (directory / ADAPTER_NAME).is_file():
            return directory / ADAPTER_NAME
    raise ModelLoadError(f"{name_or_path}: no such adapter file")


def load_official_adapter(model, path: str | os.PathLike) -> None:
    """Load an official ``mm_projector.bin`` into ``model``'s projector and DEM (values cast to their dtype)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such adapter file")
    state = load_bin(path)  # weights_only=True: a pickle with anything but tensors is refused
    projector, dem, unknown = {}, {}, []
    for key, tensor in state.items():
        if key.startswith(OFFICIAL_PROJECTOR_PREFIX):
            projector[key[len(OFFICIAL_PROJECTOR_PREFIX) :]] = tensor
        elif key.startswith(OFFICIAL_DEM_PREFIX):
            try:
                dem[dem_key_to_package(key[len(OFFICIAL_DEM_PREFIX) :])] = tensor
            except KeyError:
                unknown.append(key)
        else:
            unknown.append(key)
    if unknown:
        raise ModelLoadError(
            f"{path}: unexpected keys {sorted(unknown)[:5]} (expected mm_projector.* and spatial_embed.*)"
        )
    encoder = model.model.image_encoder
    if encoder.dem is None and dem:
        raise ModelLoadError(f"{path}: holds DEM weights but the model has no DEM (perspective ablation variant)")
    targets = [(encoder.projector, projector, "mm_projector")]
    if encoder.dem is not None:
        targets.append((encoder.dem, dem, "spatial_embed"))
    for module, weights, label in targets:
        expected = module.state_dict()
        missing = sorted(set(expected) - set(weights))
        if missing:
            raise ModelLoadError(f"{path}: {label} is missing {missing[:5]}")
        for name, tensor in weights.items():
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise ModelLoadError(
                    f"{path}: {label}.{name} has shape {tuple(tensor.shape)}, the model expects "
                    f"{tuple(expected[name].shape)} (is the adapter for another vision tower or LLM?)"
                )
        with torch.no_grad():
            for name, param in module.state_dict(keep_vars=True).items():
                param.copy_(weights[name].to(param.dtype))
