"""Converting a released INF-LLaVA checkpoint: plan every tensor, then stream them (to disk or into memory).

:func:`plan_conversion` reads only ``config.json``, the tokenizer and the weight files' headers. It maps every key
with the explicit tables of :mod:`inf_llava.conversion.keys`, checks each shape against the model the new config
builds (on the meta device), and fails with one line naming the file and key on anything unexpected, missing or
mis-shaped, before any data is read. :meth:`ConversionPlan.save` then copies tensors one at a time into incrementally
written shards (peak memory: about one output shard) and adds the config, generation config and processor, so the
output directory loads with ``from_pretrained`` and nothing else. :meth:`ConversionPlan.state_dict` is the
in-memory variant behind ``InfLlavaForConditionalGeneration.from_pretrained(original_dir)``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer

from ..configuration import InfLlavaConfig
from ..errors import ModelLoadError
from .checkpoint import TensorInfo, WeightFiles, is_repo_id, resolve_directory
from .keys import (
    DEM_PREFIX,
    LM_PREFIX,
    OFFICIAL_DEM_PREFIX,
    OFFICIAL_PROJECTOR_PREFIX,
    OFFICIAL_VISION_PREFIX,
    PROJECTOR_PREFIX,
    TOWER_PREFIX,
    KeyMapping,
    dem_key_to_official,
    map_clip_repo_key,
    map_official_key,
)
from .official import (
    ImageTokenChoice,
    build_config,
    build_generation_config,
    build_processor,
    check_supported,
    choose_image_token,
    dem_ffn_ratio,
    image_aspect_padding,
    image_normalisation,
    is_official_config,
    read_official_config,
    text_config_from_official,
    vision_config_from_directory,
    vision_config_from_shapes,
)
from .writer import ShardedSafetensorsWriter, parse_size

VISION_WEIGHTS = ("auto", "checkpoint", "tower")
PROCESSOR_MODES = ("high_res", "base")
CHECKPOINT_PATTERNS = ["*.json", "*.safetensors", "tokenizer*"]
BIN_PATTERNS = ["*.json", "pytorch_model*", "tokenizer*"]  # hub repositories without safetensors
TOWER_PATTERNS = ["*.json", "*.safetensors"]
REPORT_NAME = "conversion_report.json"
Log = Callable[[str], None]
_GROWABLE = (LM_PREFIX + "embed_tokens.weight", "lm_head.weight")
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedTensor:
    """One source tensor and where it goes (``mapping.target`` None: dropped on purpose, ``mapping.reason``)."""

    info: TensorInfo
    mapping: KeyMapping
    origin: str  # "checkpoint" or "tower"


@dataclass
class ConversionPlan:
    """Everything needed to write (or load) the converted model; built by :func:`plan_conversion`."""

    source: Path
    config: InfLlavaConfig
    processor: Any
    generation_config: Any
    image_token: ImageTokenChoice
    tensors: list[PlannedTensor]
    readers: dict[str, WeightFiles]
    source_dtype: torch.dtype
    grow_rows: int = 0
    notes: list[str] = field(default_factory=list)

    # ---- what the plan holds ---------------------------------------------------------------------------------
    @property
    def kept(self) -> list[PlannedTensor]:
        return [t for t in self.tensors if t.mapping.target is not None]

    @property
    def dropped(self) -> list[PlannedTensor]:
        return [t for t in self.tensors if t.mapping.target is None]

    def summary(self) -> list[str]:
        """Human-readable lines: per-group counts, intentional drops, origin of the tower, image token, notes."""
        reader = self.readers["checkpoint"]
        n_files = len(reader.files)
        params = sum(math.prod(t.info.shape) for t in self.kept)
        n_tensors = sum(t.origin == "checkpoint" for t in self.tensors)
        lines = [
            f"source: {self.source} ({n_files} {reader.format} file{'s' if n_files > 1 else ''}, "
            f"{n_tensors} tensors, {str(self.source_dtype).replace('torch.', '')})"
        ]
        groups = Counter(t.mapping.group for t in self.kept)
        origin = {t.mapping.group: t.origin for t in self.kept}
        for group in ("language model", "vision tower", "DEM", "projector"):
            where = ""
            if group == "vision tower" and group in origin:
                tower = self.readers["tower"].directory if origin[group] == "tower" else "the checkpoint"
                where = f" from {tower}"
            lines.append(f"mapped {group}: {_count(groups.get(group, 0))}{where}")
        lines.append(f"mapped in all: {len(self.kept)} tensors, {params:,} parameters")
        reasons = Counter((t.mapping.group, t.mapping.reason) for t in self.dropped)
        for (group, reason), count in sorted(reasons.items()):
            lines.append(f"dropped on purpose ({group}): {_count(count)}: {reason}")
        lines.append(self.image_token.describe(self.config.text_config.vocab_size - self.grow_rows))
        lines.extend(self.notes)
        return lines

    # ---- reading the tensors ---------------------------------------------------------------------------------
    def iter_tensors(
        self, dtype: torch.dtype | None = None, on_file: Callable[[Path, int], None] | None = None
    ) -> Iterator[tuple[str, torch.Tensor]]:
        """``(package key, tensor)`` for every kept tensor, file by file, one tensor in memory at a time.

        ``dtype`` casts floating tensors (None keeps each tensor's stored dtype).
        """
        for planned, tensor in self._iter_planned(dtype, on_file):
            yield planned.mapping.target, tensor

    def _iter_planned(
        self, dtype: torch.dtype | None, on_file: Callable[[Path, int], None] | None
    ) -> Iterator[tuple[PlannedTensor, torch.Tensor]]:
        by_file: dict[tuple[str, Path], dict[str, PlannedTensor]] = {}
        for planned in self.kept:
            by_file.setdefault((planned.origin, planned.info.file), {})[planned.info.name] = planned
        for (origin, file), planned in by_file.items():
            if on_file is not None:
                on_file(file, sum(p.info.nbytes for p in planned.values()))
            for name, tensor in self.readers[origin].read(file, list(planned)):
                target = planned[name].mapping.target
                if tensor.is_floating_point() and dtype is not None:
                    tensor = tensor.to(dtype)
                if self.grow_rows and target in _GROWABLE:
                    tensor = torch.cat([tensor, tensor.new_zeros(self.grow_rows, *tensor.shape[1:])])
                yield planned[name], tensor

    def state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """All converted tensors in memory (the in-memory conversion)."""
        return dict(self.iter_tensors(dtype))

    # ---- writing -----------------------------------------------------------------------------------------------
    def save(
        self,
        destination: str | os.PathLike,
        *,
        dtype: torch.dtype | None = None,
        max_shard_size: int | str = "5GB",
        overwrite: bool = False,
        log: Log | None = None,
        progress: bool | None = None,
    ) -> Path:
        """Write the converted model, config, generation config and processor to ``destination``.

        The directory appears only when complete (written next to it, then renamed). ``progress=None`` shows a bar
        when stderr is a terminal.
        """
        from tqdm.auto import tqdm

        log = log or (lambda line: None)
        destination = Path(destination).expanduser()
        if destination.resolve() == self.source.resolve():
            raise ModelLoadError(f"{destination}: the output directory must differ from the source")
        if destination.exists() and (not destination.is_dir() or any(destination.iterdir())) and not overwrite:
            raise ModelLoadError(f"{destination}: already exists and is not empty (pass --overwrite to replace it)")
        shard_bytes = parse_size(max_shard_size)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.parent / f".{destination.name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        total = sum(t.info.nbytes for t in self.kept)
        show = progress if progress is not None else sys.stderr.isatty()
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="converting", disable=not show)
        try:
            writer = ShardedSafetensorsWriter(partial, shard_bytes)

            def on_file(file: Path, nbytes: int) -> None:
                log(f"reading {file.parent.name}/{file.name} ({nbytes / 1e9:.2f} GB)")

            for planned, tensor in self._iter_planned(dtype, on_file):
                writer.add(planned.mapping.target, tensor)
                bar.update(planned.info.nbytes)
                del tensor
            files = writer.close()
            self.config.dtype = dtype or self.source_dtype
            self.config.save_pretrained(partial)
            self.generation_config.save_pretrained(partial)
            self.processor.save_pretrained(partial)
            report = {"source": str(self.source), "summary": self.summary(), "files": [f.name for f in files]}
            (partial / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n")
            if destination.exists():
                shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
            partial.rename(destination)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        finally:
            bar.close()
        shards = f"{len(files)} shard{'s' if len(files) > 1 else ''}"
        log(f"wrote {destination} ({shards}, {writer.total_bytes / 1e9:.2f} GB)")
        return destination


def _count(n: int) -> str:
    return f"{n} tensor{'s' if n != 1 else ''}"


# ---- planning ---------------------------------------------------------------------------------------------------
def plan_conversion(
    source: str | os.PathLike,
    *,
    vision_tower: str | None = None,
    vision_weights: str = "auto",
    processor_mode: str = "high_res",
    **hub_kwargs: Any,
) -> ConversionPlan:
    """Read a released checkpoint's metadata and decide where every tensor goes (no tensor data is read).

    Args:
        source: a local ``llava_llama`` directory or a hub id.
        vision_tower: the CLIP tower (local directory or hub id) to use instead of ``config.json``'s
            ``mm_vision_tower``, for its config and (when the checkpoint embeds none, or ``vision_weights="tower"``)
            its weights.
        vision_weights: ``auto``: the tower repository's own weights (CLIP's fp32 originals, what the official
            loader uses) when available without a download, else the checkpoint's embedded copy, else the
            repository downloaded; ``checkpoint``: the embedded copy; ``tower``: the repository (downloaded if
            needed).
        processor_mode: ``high_res`` (official training-path preprocessing, default) or ``base`` (official
            inference path: stock base-size processing and an in-model bicubic upsample).
        hub_kwargs: ``revision``, ``cache_dir``, ``token``, ``local_files_only`` for hub ids.
    """
    if vision_weights not in VISION_WEIGHTS:
        raise ValueError(f"vision_weights must be one of {VISION_WEIGHTS}, got {vision_weights!r}")
    if processor_mode not in PROCESSOR_MODES:
        raise ValueError(f"processor_mode must be one of {PROCESSOR_MODES}, got {processor_mode!r}")
    directory = resolve_directory(source, allow_patterns=CHECKPOINT_PATTERNS, **hub_kwargs)
    official = read_official_config(directory)
    config_path = directory / "config.json"
    check_supported(official, config_path)
    checkpoint = WeightFiles.find(directory)
    if checkpoint is None and not Path(source).expanduser().is_dir():
        directory = resolve_directory(source, allow_patterns=BIN_PATTERNS, **hub_kwargs)
        checkpoint = WeightFiles.find(directory)
    if checkpoint is None:
        adapter = (
            " (it holds a stage-1 mm_projector.bin: use `inf-llava adapter import`)"
            if any(directory.glob("**/mm_projector*.bin"))
            else ""
        )
        raise ModelLoadError(
            f"{directory}: no model weights (model.safetensors[.index.json] or pytorch_model.bin){adapter}"
        )
    infos = {info.name: info for info in checkpoint.tensor_infos()}
    if not infos:
        raise ModelLoadError(f"{checkpoint.files[0]}: the checkpoint holds no tensors")
    source_dtype = _main_dtype(infos)
    text_config = text_config_from_official(official, config_path)

    embedded = any(name.startswith(OFFICIAL_VISION_PREFIX) for name in infos)
    tower_name = vision_tower or official.get("mm_vision_tower") or official.get("vision_tower")
    tower_dir, use_tower_weights, notes = _choose_tower(
        tower_name,
        vision_weights,
        embedded=embedded,
        explicit=vision_tower is not None,
        hub_kwargs={k: v for k, v in hub_kwargs.items() if k != "revision"},  # the revision is SRC's
        source=directory,
    )
    if tower_dir is not None:
        vision_config = vision_config_from_directory(tower_dir)
        notes.append(f"vision config: {tower_dir}")
    else:
        vision_config, note = vision_config_from_shapes(infos, tower_name)
        notes.append(note)
    ffn_ratio = dem_ffn_ratio(infos, vision_config.hidden_size)

    # Shapes do not depend on the image token: check every tensor before paying for the tokenizer.
    draft = build_config(official, config_path, text_config, vision_config, 0, ffn_ratio)
    tower_layers = draft.num_tower_layers
    readers = {"checkpoint": checkpoint}
    tensors: list[PlannedTensor] = []
    unknown: list[TensorInfo] = []
    for info in infos.values():
        try:
            mapping = map_official_key(info.name, tower_layers)
        except KeyError:
            unknown.append(info)
            continue
        if mapping.group == "vision tower" and use_tower_weights:
            mapping = KeyMapping(None, "vision tower", "embedded CLIP copy (the tower repository's weights are used)")
        elif mapping.target == "lm_head.weight" and draft.tie_word_embeddings:
            mapping = KeyMapping(None, "language model", "lm_head (tied to embed_tokens by config.json)")
        tensors.append(PlannedTensor(info, mapping, "checkpoint"))
    if unknown:
        _raise_unexpected(unknown, "not part of a released INF-LLaVA checkpoint")
    if use_tower_weights:
        tower_files = WeightFiles.find(tower_dir)
        readers["tower"] = tower_files
        unknown = []
        for info in tower_files.tensor_infos():
            try:
                tensors.append(PlannedTensor(info, map_clip_repo_key(info.name, tower_layers), "tower"))
            except KeyError:
                unknown.append(info)
        if unknown:
            _raise_unexpected(unknown, "not a CLIP vision tower weight")
    _check_against_model(draft, tensors, directory)

    tokenizer = _load_tokenizer(directory, text_config)
    if len(tokenizer) > text_config.vocab_size:
        raise ModelLoadError(
            f"{directory}: the tokenizer has {len(tokenizer)} tokens but config.json's vocab_size is "
            f"{text_config.vocab_size}"
        )
    image_token = choose_image_token(tokenizer, text_config.vocab_size)
    grow_rows = max(0, image_token.token_id + 1 - text_config.vocab_size)
    text_config.vocab_size += grow_rows  # only for the last-resort added token: zero rows appended on the fly
    config = build_config(official, config_path, text_config, vision_config, image_token.token_id, ffn_ratio)
    pad_to_square = image_aspect_padding(official, config_path)
    mean, std = image_normalisation(tower_dir)
    processor = build_processor(
        config, tokenizer, image_token, mode=processor_mode, pad_to_square=pad_to_square, image_mean=mean, image_std=std
    )
    generation_config = build_generation_config(directory, text_config, tokenizer, image_token)
    notes.append(
        f"processor: {processor_mode} "
        + (
            "(official training path: the image is processed at the high-resolution size)"
            if processor_mode == "high_res"
            else "(official inference path: base-size processing, bicubic upsample inside the model)"
        )
        + f", {'pad to square' if pad_to_square else 'resize + centre crop'}, llama3 template"
    )
    return ConversionPlan(
        source=directory,
        config=config,
        processor=processor,
        generation_config=generation_config,
        image_token=image_token,
        tensors=tensors,
        readers=readers,
        source_dtype=source_dtype,
        grow_rows=grow_rows,
        notes=notes,
    )


def _load_tokenizer(directory: Path, text_config):
    if not any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelLoadError(f"{directory}: no tokenizer (tokenizer.json / tokenizer_config.json)")
    try:
        # config= keeps AutoTokenizer from parsing config.json, whose model_type transformers does not know.
        return AutoTokenizer.from_pretrained(directory, config=text_config)
    except Exception as exc:
        raise ModelLoadError(f"{directory}: cannot load the tokenizer ({type(exc).__name__}: {exc})") from None


def _choose_tower(
    name: str | None,
    vision_weights: str,
    *,
    embedded: bool,
    explicit: bool,
    hub_kwargs: dict[str, Any],
    source: Path,
) -> tuple[Path | None, bool, list[str]]:
    """Where the tower's config and weights come from: ``(tower directory or None, use its weights, notes)``.

    The official loader always builds the tower from ``mm_vision_tower`` (CLIP's own fp32 weights) and ignores the
    checkpoint's embedded bf16 copies. ``auto`` therefore prefers the tower repository whenever it is available
    without a download (a local directory or the hub cache), and uses the embedded copy otherwise; with no embedded
    copy the repository is required (and downloaded if needed).
    """
    if vision_weights == "checkpoint" and not embedded:
        raise ModelLoadError(f"{source}: the checkpoint embeds no vision tower weights ({OFFICIAL_VISION_PREFIX}*)")
    if vision_weights == "tower" or not embedded:
        directory, why = _find_tower(name, weights=True, download=True, **hub_kwargs)
        if directory is None:
            hint = "the checkpoint embeds no tower weights; " if not embedded else ""
            raise ModelLoadError(f"vision tower: {why} ({hint}pass --vision-tower PATH)")
        return directory, True, [f"vision tower weights: {directory} (as the official loader)"]
    if vision_weights == "auto":
        directory, _ = _find_tower(name, weights=True, download=False, **hub_kwargs)
        if directory is not None:
            note = f"vision tower weights: {directory} (as the official loader; the embedded copies are not used)"
            return directory, True, [note]
    directory, why = _find_tower(name, weights=False, download=False, **hub_kwargs)
    if directory is None and explicit:
        raise ModelLoadError(f"vision tower: {why}")
    notes = ["vision tower weights: the checkpoint's embedded copy"]
    if directory is None and name:
        notes.append(f"vision tower {name!r} is not available locally (no download for an embedded tower)")
    return directory, False, notes


def _find_tower(name: str | None, *, weights: bool, download: bool, **hub_kwargs: Any) -> tuple[Path | None, str]:
    """The tower repository's directory when it is available with a config (and weights, if asked), else
    ``(None, why)``. Without ``download`` only local directories and the hub cache count."""
    if not name:
        return None, "config.json names no mm_vision_tower"
    if not download:
        hub_kwargs = {**hub_kwargs, "local_files_only": True}
    try:
        directory = resolve_directory(
            name, allow_patterns=TOWER_PATTERNS if weights else ["*.json"], what="vision tower", **hub_kwargs
        )
        if weights and WeightFiles.find(directory) is None and not Path(name).expanduser().is_dir():
            patterns = ["*.json", "pytorch_model.bin*"]  # a hub repository with .bin weights only
            directory = resolve_directory(name, allow_patterns=patterns, what="vision tower", **hub_kwargs)
    except ModelLoadError as exc:
        return None, str(exc)
    if not (directory / "config.json").is_file():
        return None, f"{directory}: the vision tower directory has no config.json"
    if weights and WeightFiles.find(directory) is None:
        return None, f"{directory}: the vision tower directory has no model weights"
    return directory, ""


def _main_dtype(infos: dict[str, TensorInfo]) -> torch.dtype:
    sizes: Counter[torch.dtype] = Counter()
    for info in infos.values():
        if info.dtype.is_floating_point:
            sizes[info.dtype] += info.nbytes
    return sizes.most_common(1)[0][0] if sizes else torch.float32


def _raise_unexpected(unknown: list[TensorInfo], why: str) -> None:
    first = unknown[0]
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise ModelLoadError(f"{first.file}: unexpected tensor {first.name!r}{more}: {why}")


def official_name(target: str) -> str:
    """The released-checkpoint name of a package key (for error messages)."""
    if target.startswith(DEM_PREFIX):
        return OFFICIAL_DEM_PREFIX + dem_key_to_official(target[len(DEM_PREFIX) :])
    if target.startswith(PROJECTOR_PREFIX):
        return OFFICIAL_PROJECTOR_PREFIX + target[len(PROJECTOR_PREFIX) :]
    if target.startswith(TOWER_PREFIX):
        return OFFICIAL_VISION_PREFIX + target[len(TOWER_PREFIX) :]
    if target.startswith(LM_PREFIX):
        return "model." + target[len(LM_PREFIX) :]
    return target


def _check_against_model(config: InfLlavaConfig, tensors: list[PlannedTensor], source: Path) -> None:
    """Every mapped tensor has a place of the right shape in the model; every model tensor is provided once."""
    from ..modeling.inf_llava import InfLlavaForConditionalGeneration

    with torch.device("meta"):
        model = InfLlavaForConditionalGeneration(config)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    if config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
    provided: dict[str, PlannedTensor] = {}
    for planned in tensors:
        target = planned.mapping.target
        if target is None:
            continue
        info = planned.info
        if target not in expected:
            raise ModelLoadError(
                f"{info.file}: unexpected tensor {info.name!r}: the converted model has no {target!r} "
                "(an unknown sub-module or a layer beyond config.json's sizes)"
            )
        if target in provided:
            raise ModelLoadError(f"{info.file}: {info.name!r} duplicates {provided[target].info.name!r}")
        if info.shape != expected[target]:
            raise ModelLoadError(
                f"{info.file}: {info.name!r} has shape {list(info.shape)}, but config.json and the vision tower "
                f"config make it {list(expected[target])}"
            )
        provided[target] = planned
    missing = [name for name in expected if name not in provided]
    if missing:
        names = [official_name(name) for name in missing]
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise ModelLoadError(f"{source}: the checkpoint is missing {names[0]!r}{more}")


# ---- in-memory conversion (from_pretrained on an original directory) ----------------------------------------------
HUB_KWARGS = ("revision", "cache_dir", "token", "local_files_only", "force_download")


def official_checkpoint_directory(name_or_path: str | os.PathLike, kwargs: dict[str, Any]) -> Path | None:
    """The local directory of ``name_or_path`` if it is an original INF-LLaVA (``llava_llama``) checkpoint, else None.

    Hub ids are checked through their ``config.json`` only (as ``from_pretrained`` would fetch it anyway); failures
    mean "not an original checkpoint" and leave the error to the regular loading path.
    """
    hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None}
    path = Path(name_or_path).expanduser()
    if kwargs.get("subfolder"):
        path = path / kwargs["subfolder"]
    if path.is_dir():
        config_file = path / "config.json"
    elif is_repo_id(str(name_or_path)) and not kwargs.get("subfolder"):
        from huggingface_hub import hf_hub_download

        try:
            config_file = Path(hf_hub_download(str(name_or_path), "config.json", **hub))
        except Exception:
            return None
    else:
        return None
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return None
    if not is_official_config(config):
        return None
    return path if path.is_dir() else resolve_directory(name_or_path, allow_patterns=CHECKPOINT_PATTERNS, **hub)


def load_official_in_memory(directory: Path, kwargs: dict[str, Any]) -> ConversionPlan:
    """Plan the conversion of an original checkpoint for loading in memory (logs that it does so); ``kwargs`` are
    ``from_pretrained``'s, whose hub settings (cache, token, offline) also apply to the vision tower."""
    logger.warning(
        "%s is an original INF-LLaVA (llava_llama) checkpoint: converting it in memory. "
        "`inf-llava convert-official SRC DST` saves a converted copy that loads directly.",
        directory,
    )
    hub = {k: kwargs[k] for k in HUB_KWARGS if kwargs.get(k) is not None and k != "revision"}
    return plan_conversion(directory, **hub)
