"""Files shipped inside the package: the trained demo model (a directory loadable with ``from_pretrained``)."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelLoadError

ASSETS_DIR = Path(__file__).parent / "assets"
DEMO_MODEL_DIR = ASSETS_DIR / "demo-model"


def default_model_path() -> Path:
    """The shipped demo model, used by every command that takes ``--model`` when none is given."""
    if (DEMO_MODEL_DIR / "config.json").is_file():
        return DEMO_MODEL_DIR
    raise ModelLoadError(f"no --model given and the shipped demo model is missing ({DEMO_MODEL_DIR}); pass --model DIR")


def resolve_model_path(model: str | None) -> str:
    """``None`` -> the shipped demo model; anything else unchanged (a directory or a hub id)."""
    return str(default_model_path()) if model is None else model
