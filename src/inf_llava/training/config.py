"""`TrainConfig`: every setting of a training run, typed and validated, from a YAML file plus overrides.

Precedence: built-in defaults < the stage's defaults (learning rate, template) < the YAML ``--config`` file < command
line flags. The resolved config is saved next to the weights as ``train_config.yaml``. YAML keys are the field names
(``grad_accum`` or ``grad-accum``); an unknown key or a value of the wrong type is a one-line error naming it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ..images import DEFAULT_MAX_PIXELS
from .optim import SCHEDULES
from .stages import get_stage

MODEL_DTYPES = ("fp32", "bf16")
ASPECT_RATIOS = ("pad", "square")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (see ``docs/training.md`` for the user guide).

    Required: ``stage``, ``model`` (an ``inf-llava init`` / earlier-stage output directory), ``data`` (LLaVA JSON or
    JSONL) and ``output``. ``lr``, ``template`` and ``image_aspect_ratio`` default to the stage's (spec 13.2).
    Training images are always preprocessed at the model's high-resolution size (the official training path),
    whatever mode the saved processor uses for inference. Batch sizes are per process:
    the global batch is ``batch_size x processes x grad_accum``.
    """

    stage: str
    model: str
    data: str
    output: str
    image_folder: str | None = None
    template: str | None = None
    image_aspect_ratio: str | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 4
    grad_accum: int = 1
    lr: float | None = None
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    lr_scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    seed: int = 42
    max_length: int = 2048
    save_steps: int | None = None
    save_total_limit: int | None = None
    resume_from: str | None = None
    overwrite_output: bool = False
    logging_steps: int = 1
    bf16: bool = False
    gradient_checkpointing: bool = False
    group_by_modality_length: bool = False
    unfreeze_vision_tower: bool = False
    lora: bool = False
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    qlora: bool = False
    adapter: str | None = None
    skip_invalid: bool = False
    verify_data: bool = False
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    num_workers: int = 2
    model_dtype: str = "fp32"
    progress: bool = True

    def __post_init__(self) -> None:
        stage = get_stage(self.stage)
        if self.lr is None:
            object.__setattr__(self, "lr", stage.lr)
        if self.image_aspect_ratio is None:
            object.__setattr__(self, "image_aspect_ratio", stage.image_aspect_ratio)
        if self.image_aspect_ratio not in ASPECT_RATIOS:
            raise ValueError(f"image_aspect_ratio must be 'pad' or 'square', got {self.image_aspect_ratio!r}")
        positive = ("batch_size", "grad_accum", "logging_steps", "max_length", "lora_r", "lora_alpha")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "save_steps", "save_total_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {value}")
        if not (math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio <= 1:
            raise ValueError(f"warmup_ratio must be in [0, 1], got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ValueError("weight_decay and max_grad_norm must be >= 0")
        if not 0 <= self.lora_dropout < 1:
            raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lr_scheduler not in SCHEDULES:
            raise ValueError(f"lr_scheduler must be one of {', '.join(SCHEDULES)}, got {self.lr_scheduler!r}")
        if self.model_dtype not in MODEL_DTYPES:
            raise ValueError(f"model_dtype must be one of {', '.join(MODEL_DTYPES)}, got {self.model_dtype!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.qlora and not self.lora:
            object.__setattr__(self, "lora", True)

    @property
    def policy(self):
        return get_stage(self.stage)

    @classmethod
    def from_sources(cls, config_file: str | os.PathLike | None = None, **overrides: Any) -> TrainConfig:
        """Defaults < YAML file < ``overrides`` (None values in ``overrides`` mean "not given")."""
        values: dict[str, Any] = {}
        if config_file is not None:
            values.update(load_yaml(config_file))
        values.update({key: value for key, value in overrides.items() if value is not None})
        missing = [f.name for f in fields(cls) if _required(f) and f.name not in values]
        if missing:
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            raise ValueError(f"missing required setting(s): {flags}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run config: a mapping of :class:`TrainConfig` field names to values, type-checked."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    types_by_name = _field_types()
    out = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in types_by_name:
            raise ValueError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(types_by_name))})")
        out[name] = _coerce(value, types_by_name[name], f"{path}: {key}")
    return out


def _field_types() -> dict[str, Any]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _coerce(value: Any, annotation: Any, label: str) -> Any:
    """Check ``value`` against a field type; numbers written as strings (YAML reads ``1e-3`` as text) are parsed."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        if value is None and type(None) in args:
            return None
        annotation = next(a for a in args if a is not type(None))
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    name = getattr(annotation, "__name__", str(annotation))
    raise ValueError(f"{label} must be {name}, got {value!r}")
