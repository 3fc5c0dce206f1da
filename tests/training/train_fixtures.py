"""Fixtures and helpers shared by the training tests (imported by the test modules; kept out of conftest.py so the
top-level conftest stays the only one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from inf_llava.data.toy import make_toy_dataset
from inf_llava.presets import build_tiny

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The tiny preset saved as an ``inf-llava init`` output (seed 0)."""
    path = tmp_path_factory.mktemp("tiny-init")
    model, processor = build_tiny(seed=0)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def caption_data(tmp_path_factory) -> Path:
    """24 stage-1 caption records (JSON list) with their images."""
    return make_toy_dataset(tmp_path_factory.mktemp("captions"), 24, kind="caption", file_format="json")


@pytest.fixture(scope="session")
def instruct_data(tmp_path_factory) -> Path:
    """22 multi-turn records, every 4th text-only (JSONL): 22 is not a multiple of the batch, so the last step is
    short."""
    return make_toy_dataset(tmp_path_factory.mktemp("instruct"), 22, kind="instruct", text_only_every=4)


def reset_accelerate() -> None:
    """accelerate keeps process-wide singletons (fixed mixed precision etc.); a new in-process run needs a clean
    slate, as a new process would have."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def run(config, **kwargs):
    """:func:`inf_llava.training.train` in this process, from a fresh accelerate state, on one intra-op thread."""
    from inf_llava.training import train

    reset_accelerate()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocess runs (OMP_NUM_THREADS=1): same kernels, and fair on a shared CPU
    try:
        return train(config, **kwargs)
    finally:
        torch.set_num_threads(threads)
        reset_accelerate()


def train_config(model_dir: Path, data: Path, output: Path, **overrides):
    from inf_llava.training import TrainConfig

    settings = dict(
        stage="finetune",
        model=str(model_dir),
        data=str(data),
        image_folder=str(data.parent / "images"),
        output=str(output),
        batch_size=4,
        max_steps=4,
        num_workers=0,
        progress=False,
        seed=0,
    )
    settings.update(overrides)
    return TrainConfig(**settings)


def weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a saved model directory."""
    out = {}
    for file in sorted(Path(path).glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


def group_of(name: str) -> str:
    from inf_llava.training.stages import module_group

    return module_group(name) or "other"


def cli(*args: str, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m inf_llava ...`` in a subprocess (offline, one intra-op thread: the machine is shared)."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "inf_llava", *args], capture_output=True, text=True, timeout=timeout, env=full_env
    )
