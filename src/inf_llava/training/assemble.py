"""Assemble a fresh INF-LLaVA from pretrained HF backbones (``inf-llava init``): the starting point of stage 1.

The vision tower (any HF vision model: CLIP, SigLIP, ...; a full dual-encoder checkpoint works too) and the causal
LM (Llama, Qwen2, ...) keep their pretrained weights exactly; the DEM and the projector are newly initialised from a
seed. Everything goes through ``from_pretrained(config=..., state_dict=...)``, so the model is built on the meta
device and only the new modules are initialised (no random 8B init that is then overwritten).

Tokens: the image slots reuse a reserved special token when the tokenizer has one (Llama-3's
``<|reserved_special_token_0|>``), else ``<image>`` is added; a missing pad token becomes another reserved token or
an added ``<pad>``. Only added tokens grow the embeddings; their rows start at the mean of the existing rows, as the
official code does for its ``<pad>``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import ModelLoadError
from ..processing.templates import TEMPLATES

IMAGE_TOKEN_CANDIDATES = ("<|reserved_special_token_0|>", "<|image_pad|>", "<image>")
PAD_TOKEN_CANDIDATES = ("<|finetune_right_pad_id|>", "<|reserved_special_token_1|>", "<|vision_pad|>", "<pad>")
TOWER_PREFIX = "model.image_encoder.vision_tower."
LLM_PREFIX = "model.language_model."


@dataclass
class AssemblyReport:
    """What ``init`` did, for the user and for tests."""

    vision_weights: int = 0
    vision_weights_unused: list[str] = field(default_factory=list)
    llm_weights: int = 0
    initialised: list[str] = field(default_factory=list)
    added_tokens: list[str] = field(default_factory=list)
    image_token: str = ""
    pad_token: str = ""
    template: str = ""

    def summary(self) -> str:
        added = f", added tokens {self.added_tokens}" if self.added_tokens else ""
        return (
            f"vision tower: {self.vision_weights} tensors loaded ({len(self.vision_weights_unused)} beyond the "
            f"feature layer left out); LLM: {self.llm_weights} tensors loaded; newly initialised: "
            f"{len(self.initialised)} DEM / projector tensors; image token {self.image_token!r}, pad "
            f"{self.pad_token!r}{added}; template {self.template!r}"
        )


def guess_template(tokenizer) -> str:
    """The chat template matching a tokenizer's special tokens (Llama-3 headers, ChatML markers, else Vicuna)."""
    vocab = tokenizer.get_vocab()
    if "<|start_header_id|>" in vocab and "<|eot_id|>" in vocab:
        return "llama3"
    if "<|im_start|>" in vocab and "<|im_end|>" in vocab:
        return "chatml"
    return "vicuna_v1"


def prepare_tokenizer(tokenizer, image_token: str | None = None) -> tuple[str, list[str]]:
    """Pick (or add) the image token and make sure a pad token exists; returns ``(image_token, added_tokens)``."""
    vocab = tokenizer.get_vocab()
    reserved = {tokenizer.pad_token, tokenizer.eos_token, tokenizer.bos_token, tokenizer.unk_token} - {None}
    added: list[str] = []
    candidates = (image_token,) if image_token else IMAGE_TOKEN_CANDIDATES
    chosen = next((t for t in candidates if t in vocab and t not in reserved), None)
    if chosen is None:
        chosen = image_token or "<image>"
        if chosen in reserved:
            raise ValueError(f"image token {chosen!r} is the tokenizer's pad/eos/bos token; choose another")
        tokenizer.add_special_tokens({"extra_special_tokens": [chosen]}, replace_extra_special_tokens=False)
        added.append(chosen)
    if tokenizer.pad_token is None:
        pad = next((t for t in PAD_TOKEN_CANDIDATES if t in vocab and t != chosen), None)
        if pad is None:
            pad = "<pad>"
            added.append(pad)
        tokenizer.add_special_tokens({"pad_token": pad})
    return chosen, added


def _grow_embeddings(llm, new_size: int) -> None:
    """Resize the LLM's embeddings to ``new_size`` rows; new rows = the mean of the old ones (official ``<pad>``)."""
    old = llm.get_input_embeddings().weight.shape[0]
    if new_size <= old:
        return
    llm.resize_token_embeddings(new_size, mean_resizing=False)
    with torch.no_grad():
        for embedding in {id(m): m for m in (llm.get_input_embeddings(), llm.get_output_embeddings()) if m}.values():
            embedding.weight[old:] = embedding.weight[:old].mean(dim=0, keepdim=True)


def _load_vision(path: str, dtype: torch.dtype):
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = AutoConfig.from_pretrained(path)
    vision_config = getattr(config, "vision_config", None) or config
    if not hasattr(vision_config, "image_size") or not hasattr(vision_config, "patch_size"):
        raise ModelLoadError(f"{path}: not a vision model (its config has no image_size / patch_size)")
    try:
        tower_class = MODEL_MAPPING[type(vision_config)]
    except KeyError:
        raise ModelLoadError(f"{path}: no HF vision model class for {type(vision_config).__name__}") from None
    tower = tower_class.from_pretrained(path, config=vision_config, dtype=dtype)
    return vision_config, tower


def _image_statistics(path: str) -> dict[str, Any]:
    """The vision backbone's normalisation constants (CLIP's when it ships no image-processor config)."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(path)
    except (OSError, ValueError, KeyError):
        return {}
    stats = {}
    for key in ("image_mean", "image_std"):
        value = getattr(processor, key, None)
        if value is not None:
            stats[key] = [float(v) for v in value]
    return stats


def assemble(
    vision_tower: str | os.PathLike,
    llm: str | os.PathLike,
    *,
    grid: int | tuple[int, int] | str = 3,
    seed: int = 0,
    template: str | None = None,
    image_token: str | None = None,
    dtype: str = "fp32",
    mode: str = "high_res",
    **config_settings: Any,
):
    """Build ``(model, processor, report)`` from a vision backbone and an LLM (local directories or hub ids).

    ``config_settings`` go to :class:`~inf_llava.InfLlavaConfig` (``vision_feature_layer``, ``projector_type``,
    ``dem_num_heads``, ...). Raises ModelLoadError when a backbone cannot be loaded or a weight does not fit.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..configuration import InfLlavaConfig
    from ..modeling.inf_llava import InfLlavaForConditionalGeneration
    from ..processing.image_processing import InfLlavaImageProcessor
    from ..processing.processor import InfLlavaProcessor
    from ..runtime import resolve_dtype

    torch_dtype = resolve_dtype(dtype)
    if template is not None and template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
    vision_path, llm_path = str(vision_tower), str(llm)
    with _quiet_transformers():  # its load reports list the unused text tower etc.; the AssemblyReport says it all
        try:
            vision_config, tower = _load_vision(vision_path, torch_dtype)
            tokenizer = AutoTokenizer.from_pretrained(llm_path)
            language_model = AutoModelForCausalLM.from_pretrained(llm_path, dtype=torch_dtype)
        except OSError as exc:
            raise ModelLoadError(f"cannot load a backbone: {' '.join(str(exc).split())}") from None
    report = AssemblyReport()
    report.image_token, report.added_tokens = prepare_tokenizer(tokenizer, image_token)
    report.pad_token = tokenizer.pad_token
    report.template = template or guess_template(tokenizer)
    _grow_embeddings(language_model, len(tokenizer))
    text_config = language_model.config
    config = InfLlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        grid=list(grid) if isinstance(grid, tuple) else grid,
        image_token_id=tokenizer.convert_tokens_to_ids(report.image_token),
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
        **config_settings,
    )
    with torch.device("meta"):
        expected = InfLlavaForConditionalGeneration(config).state_dict()
    state: dict[str, torch.Tensor] = {}
    for name, tensor in tower.state_dict().items():
        if TOWER_PREFIX + name in expected:
            state[TOWER_PREFIX + name] = tensor
        else:
            report.vision_weights_unused.append(name)
    report.vision_weights = len(state)
    for name, tensor in language_model.base_model.state_dict().items():
        state[LLM_PREFIX + name] = tensor
    state["lm_head.weight"] = language_model.get_output_embeddings().weight
    report.llm_weights = len(state) - report.vision_weights
    _check_shapes(state, expected)
    missing_backbone = [k for k in expected if k not in state and k.startswith((TOWER_PREFIX, LLM_PREFIX))]
    if missing_backbone:
        raise ModelLoadError(f"the backbones lack {len(missing_backbone)} weight(s), e.g. {missing_backbone[0]!r}")
    torch.manual_seed(seed)
    with _quiet_transformers():
        model, info = InfLlavaForConditionalGeneration.from_pretrained(
            None, config=config, state_dict=state, dtype=torch_dtype, output_loading_info=True
        )
    if info["unexpected_keys"] or info["mismatched_keys"]:
        raise ModelLoadError(f"backbone weights did not fit: {info}")
    report.initialised = sorted(info["missing_keys"])
    model.generation_config = language_model.generation_config
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    image_processor = InfLlavaImageProcessor.for_geometry(config.geometry, mode=mode, **_image_statistics(vision_path))
    processor = InfLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        geometry=config.geometry.to_dict(),
        image_token=report.image_token,
        template=report.template,
    )
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    model.generation_config.eos_token_id = sorted(set(eos) | set(processor.stop_token_ids(report.template)))
    return model, processor, report


@contextlib.contextmanager
def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _check_shapes(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    for name, tensor in state.items():
        want = expected.get(name)
        if want is not None and tuple(want.shape) != tuple(tensor.shape):
            raise ModelLoadError(
                f"{name}: the backbone gives shape {tuple(tensor.shape)}, the INF-LLaVA config expects "
                f"{tuple(want.shape)}"
            )


def assemble_preset(name: str = "tiny", seed: int = 0, **config_settings: Any):
    """``(model, processor)`` of a named preset built locally (only ``tiny`` has no weights to download);
    ``config_settings`` (``grid``, ``max_views``, ...) go to its config."""
    if name != "tiny":
        raise ValueError(f"--preset {name!r} is not buildable offline; only 'tiny' is (use --vision-tower / --llm)")
    from ..presets import build_tiny

    if isinstance(config_settings.get("grid"), tuple):
        config_settings["grid"] = list(config_settings["grid"])
    return build_tiny(seed=seed, **config_settings)


def save_model(model, processor, output: str | os.PathLike, overwrite: bool = False) -> None:
    """Save model + processor into ``output`` (which must be empty unless ``overwrite``)."""
    from pathlib import Path

    output = Path(output)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise ValueError(f"{output} is not empty; choose a new --output or pass --overwrite")
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    processor.save_pretrained(output)
