"""What a saved INF-LLaVA model directory holds, and which of its files make up a Hub repository.

:func:`inspect_model_dir` checks the directory the way ``from_pretrained`` will need it (config of model type
``inf_llava``, complete weights, processor and tokenizer) and fails with one line naming what is wrong, before
anything is uploaded. Only files that belong to a model are published (:data:`PUBLISHED`); everything else in the
directory (training checkpoints, optimizer states, logs, plots) is listed as left out.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

CONFIG_FILE = "config.json"
PROCESSOR_FILE = "processor_config.json"
TRAIN_CONFIG_FILE = "train_config.yaml"  # written by `inf-llava train` next to the weights
CONVERSION_REPORT_FILE = "conversion_report.json"  # written by `inf-llava convert-official`
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_INDEX_FILE = "model.safetensors.index.json"
CARD_FILE = "README.md"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
EVAL_RESULTS_DIR = "eval-results"  # `inf-llava eval run --output MODEL_DIR/eval-results/<benchmark>`
# Top-level files of a model repository, by name pattern (the card is generated, the chat template regenerated).
PUBLISHED = (
    CONFIG_FILE,
    "generation_config.json",
    WEIGHTS_FILE,
    WEIGHTS_INDEX_FILE,
    "model-*-of-*.safetensors",
    PROCESSOR_FILE,
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    TRAIN_CONFIG_FILE,
    CONVERSION_REPORT_FILE,
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


@dataclass
class ModelDir:
    """A checked model directory: its config as saved, the files to publish and those left out."""

    path: Path
    config: dict[str, Any]
    files: list[Path] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    @property
    def train_config(self) -> Path | None:
        return self._optional(TRAIN_CONFIG_FILE)

    @property
    def conversion_report(self) -> dict[str, Any] | None:
        path = self._optional(CONVERSION_REPORT_FILE)
        return json.loads(path.read_text(encoding="utf-8")) if path else None

    @property
    def existing_card(self) -> Path | None:
        return self._optional(CARD_FILE)

    def _optional(self, name: str) -> Path | None:
        path = self.path / name
        return path if path.is_file() else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    return data


def _weight_files(path: Path) -> list[Path]:
    index = path / WEIGHTS_INDEX_FILE
    if index.is_file():
        weight_map = _read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index}: no weight_map")
        shards = sorted(set(weight_map.values()))
        missing = [name for name in shards if not (path / name).is_file()]
        if missing:
            raise ModelLoadError(f"{path}: shard {missing[0]} listed in {WEIGHTS_INDEX_FILE} is missing")
        return [path / name for name in shards]
    if (path / WEIGHTS_FILE).is_file():
        return [path / WEIGHTS_FILE]
    raise ModelLoadError(f"{path}: no weights ({WEIGHTS_FILE} or {WEIGHTS_INDEX_FILE}); is the model saved?")


def inspect_model_dir(path: str | Path) -> ModelDir:
    """Check ``path`` is a complete INF-LLaVA model directory; raise ModelLoadError (one line) if not."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ModelLoadError(f"{path}: not a directory")
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ModelLoadError(f"{path}: not a model directory (no {CONFIG_FILE})")
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type == "llava_llama":
        raise ModelLoadError(
            f"{path}: an original INF-LLaVA (llava_llama) checkpoint; convert it first: "
            f"inf-llava convert-official {path} OUTPUT_DIR"
        )
    if model_type != "inf_llava":
        raise ModelLoadError(f"{path}: not an INF-LLaVA model (config.json model_type is {model_type!r})")
    weights = _weight_files(path)
    if not (path / PROCESSOR_FILE).is_file():
        raise ModelLoadError(f"{path}: no {PROCESSOR_FILE} (save the processor with the model)")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{path}: no tokenizer ({' / '.join(TOKENIZER_FILES)})")
    files, left_out = [], []
    for entry in sorted(path.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in PUBLISHED):
            if entry.name.endswith(".safetensors") and entry not in weights:
                left_out.append(f"{entry.name} (not in {WEIGHTS_INDEX_FILE})")
                continue
            files.append(entry)
        elif entry.name not in (CARD_FILE, CHAT_TEMPLATE_FILE):
            left_out.append(entry.name + ("/" if entry.is_dir() else ""))
    return ModelDir(path=path, config=config, files=files, left_out=left_out)


__all__ = [
    "CARD_FILE",
    "CHAT_TEMPLATE_FILE",
    "EVAL_RESULTS_DIR",
    "PUBLISHED",
    "ModelDir",
    "inspect_model_dir",
]
