"""Atomic, resumable training checkpoints.

A checkpoint ``OUTPUT/checkpoint-<step>/`` holds what accelerate's ``save_state`` writes (model weights as
safetensors, optimizer, per-process RNG states; sharded files under FSDP / DeepSpeed) plus ``trainer_state.json``
(step, scheduler state, the sampling fingerprint). Outside FSDP / DeepSpeed only the *trainable* weights are written
(a stage-1 checkpoint of an 8B model is the DEM + projector, not 16 GB), under the unwrapped module's names so a
checkpoint moves between 1 and N processes; resuming reloads the frozen rest from ``--model``.

Atomicity: everything is written into the hidden ``.checkpoint-<step>.tmp/``, flushed to disk, and only then renamed
to ``checkpoint-<step>`` (one ``rename``). A run killed at any moment leaves either a complete checkpoint or a
hidden temporary directory that :func:`list_checkpoints` ignores and the next run removes. Old checkpoints are
renamed away before they are deleted, so a half-deleted one never looks complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError
from ..jsonl import atomic_write_text

STATE_FILE = "trainer_state.json"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
STATE_VERSION = 1


def checkpoint_path(output: str | os.PathLike, step: int) -> Path:
    return Path(output) / f"checkpoint-{step}"


def list_checkpoints(output: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output`` as ``(step, path)``, oldest first."""
    output = Path(output)
    if not output.is_dir():
        return []
    found = []
    for child in output.iterdir():
        match = CHECKPOINT_PATTERN.match(child.name)
        if match and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def resolve_resume(output: str | os.PathLike, resume_from: str | None) -> Path | None:
    """``None`` -> None; ``"latest"`` -> the newest complete checkpoint in ``output`` (None if there is none);
    a path -> that checkpoint, which must be complete."""
    if resume_from is None:
        return None
    if resume_from == "latest":
        checkpoints = list_checkpoints(output)
        return checkpoints[-1][1] if checkpoints else None
    path = Path(resume_from)
    if not path.is_dir():
        raise ModelLoadError(f"{path}: no such checkpoint directory")
    if not (path / STATE_FILE).is_file():
        raise ModelLoadError(f"{path}: not a complete checkpoint (no {STATE_FILE})")
    return path


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    file = Path(path) / STATE_FILE
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{file}: unreadable trainer state ({exc})") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ModelLoadError(f"{file}: not a trainer state of version {STATE_VERSION}")
    return state


def remove_stale_temporaries(output: str | os.PathLike) -> None:
    """Delete hidden ``.checkpoint-*`` directories left by a killed run (main process only)."""
    output = Path(output)
    if output.is_dir():
        for child in output.iterdir():
            if child.name.startswith(".checkpoint-") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def model_file(index: int) -> str:
    """accelerate's name for the ``index``-th model's weights."""
    return "model.safetensors" if index == 0 else f"model_{index}.safetensors"


def make_state_hooks(accelerator):
    """``(save_hook, load_hook)`` for accelerate's ``save_state`` / ``load_state`` outside FSDP and DeepSpeed.

    Weights are stored under the *unwrapped* module's names (accelerate would prefix ``module.`` under DDP, so a
    checkpoint written by 2 processes would not load into 1) and only for trainable parameters. Loading checks
    that every trainable parameter is present and nothing unknown is, then loads the rest of the state as usual.
    """

    def trainable(model) -> set[str]:
        return {name for name, param in accelerator.unwrap_model(model).named_parameters() if param.requires_grad}

    def save_hook(models, weights, output_dir) -> None:
        for index, model in enumerate(models[: len(weights)]):
            keep = trainable(model)
            state = accelerator.unwrap_model(model).state_dict()
            weights[index] = {name: tensor for name, tensor in state.items() if name in keep}

    def load_hook(models, input_dir) -> None:
        from safetensors.torch import load_file

        for index, model in enumerate(models):
            file = Path(input_dir) / model_file(index)
            if not file.is_file():
                raise ModelLoadError(f"{input_dir}: no {file.name} in the checkpoint")
            state = load_file(str(file))
            target = accelerator.unwrap_model(model)
            missing = sorted(trainable(model) - set(state))
            if missing:
                raise ModelLoadError(
                    f"{input_dir}: the checkpoint lacks {len(missing)} trainable weight(s) of this run, e.g. "
                    f"{missing[0]!r} (was it written with another stage, --lora or --unfreeze-vision-tower setting?)"
                )
            unknown = sorted(set(state) - set(target.state_dict()))
            if unknown:
                raise ModelLoadError(f"{input_dir}: the checkpoint has weights this model lacks, e.g. {unknown[0]!r}")
            target.load_state_dict(state, strict=False)
        models.clear()  # loaded here; accelerate must not load them again

    return save_hook, load_hook


def save_checkpoint(
    accelerator, output: str | os.PathLike, step: int, state: dict[str, Any], keep_last: int | None = None
) -> Path:
    """Write ``checkpoint-<step>`` atomically. Every process must call this (collective)."""
    output = Path(output)
    final = checkpoint_path(output, step)
    tmp = output / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        output.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()  # every process has written its RNG state / shards
    if accelerator.is_main_process:
        atomic_write_text(tmp / STATE_FILE, json.dumps({"version": STATE_VERSION, **state}, indent=1) + "\n")
        _fsync_tree(tmp)
        if final.exists():  # a re-run of the same step: swap, never leave a gap without a complete copy
            _remove_dir(final)
        os.replace(tmp, final)
        _fsync_dir(output)
        if keep_last is not None:
            for _, old in list_checkpoints(output)[:-keep_last]:
                _remove_dir(old)
    accelerator.wait_for_everyone()
    return final


def _remove_dir(path: Path) -> None:
    doomed = path.with_name(f".{path.name}.deleting")
    shutil.rmtree(doomed, ignore_errors=True)
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
