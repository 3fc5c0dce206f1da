"""What a released INF-LLaVA checkpoint means: its ``config.json`` fields, vision tower, tokenizer and image token.

A released model (``WeihuangLin/INF-LLaVA-sft``, ``INF_star-LLaVA-sft``) is an upstream-LLaVA ``llava_llama``
directory (spec 12): Llama-3 fields plus ``mm_*`` fields in ``config.json``, a tokenizer with an added ``<pad>``
(vocabulary 128257), and usually the CLIP tower's weights embedded under ``model.vision_tower.vision_tower.*``. This
module turns those into an :class:`~inf_llava.InfLlavaConfig`, a processor and a generation config; moving the
tensors is :mod:`inf_llava.conversion.convert`.

The image token: the package marks image slots with a real vocabulary id instead of the official ``-200`` sentinel.
To leave the released vocabulary and logits untouched it reuses ``<|reserved_special_token_0|>`` (id 128002 in
Llama-3), which official prompts never contain; failing that another reserved token, then the added ``<pad>`` (batch
padding then uses the EOS id so padding never looks like an image slot); only as a last resort is a new token added,
with a zero embedding and ``lm_head`` row that generation suppresses.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoConfig, CLIPVisionConfig, GenerationConfig, LlamaConfig, PreTrainedConfig

from ..configuration import CLIP_L14_336, CLIP_L14_336_REPO, InfLlavaConfig
from ..errors import ModelLoadError
from ..processing.image_processing import CLIP_MEAN, CLIP_STD, InfLlavaImageProcessor
from ..processing.processor import InfLlavaProcessor
from .checkpoint import TensorInfo
from .keys import OFFICIAL_DEM_PREFIX, OFFICIAL_VISION_PREFIX

OFFICIAL_MODEL_TYPES = ("llava_llama",)
OFFICIAL_CLIP = CLIP_L14_336_REPO
OFFICIAL_GRID = 3  # hard-coded in the official encode_images
OFFICIAL_DEM_HEADS = 8  # hard-coded in the official SpatialEmbed
PREFERRED_IMAGE_TOKEN = "<|reserved_special_token_0|>"
ADDED_IMAGE_TOKEN = "<|inf_llava_image|>"
CLIP_HEAD_DIM = 64  # every OpenAI CLIP vision tower; used only when no tower config is available

# config.json fields written by LLaVA's training code on top of the LLM's own config (spec 12.2).
LLAVA_FIELDS = frozenset(
    {
        "mm_vision_tower",
        "vision_tower",
        "mm_hidden_size",
        "mm_vision_select_layer",
        "mm_vision_select_feature",
        "mm_projector_type",
        "mm_patch_merge_type",
        "use_mm_proj",
        "image_aspect_ratio",
        "image_grid_pinpoints",
        "tokenizer_padding_side",
        "tokenizer_model_max_length",
        "tune_mm_mlp_adapter",
        "freeze_mm_mlp_adapter",
        "mm_use_im_start_end",
        "mm_use_im_patch_token",
        "mm_projector_lr",
        "mm_vision_tower_lr",
        "unfreeze_mm_vision_tower",
        "mm_resampler_type",
    }
)
_META_FIELDS = frozenset(
    {"architectures", "model_type", "_name_or_path", "transformers_version", "torch_dtype", "dtype"}
)
_REQUIRED_LLM_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
_RESERVED = re.compile(r"^<\|reserved_special_token_(\d+)\|>$")


# ---- config.json -------------------------------------------------------------------------------------------------
def read_official_config(directory: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict; raises ModelLoadError unless it is an official ``llava_llama``."""
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{directory}: no config.json (not a model directory)") from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{path}: expected a JSON object")
    if config.get("model_type") not in OFFICIAL_MODEL_TYPES:
        raise ModelLoadError(
            f"{path}: model_type is {config.get('model_type')!r}, not an official INF-LLaVA checkpoint "
            f"({', '.join(OFFICIAL_MODEL_TYPES)})"
        )
    return config


def is_official_config(config: dict[str, Any]) -> bool:
    return isinstance(config, dict) and config.get("model_type") in OFFICIAL_MODEL_TYPES


def text_config_from_official(config: dict[str, Any], path: Path) -> LlamaConfig:
    """The Llama part of an official ``config.json`` (everything but the LLaVA and bookkeeping fields)."""
    missing = [field for field in _REQUIRED_LLM_FIELDS if field not in config]
    if missing:
        raise ModelLoadError(f"{path}: missing the Llama field(s) {', '.join(missing)}")
    fields = {k: v for k, v in config.items() if k not in LLAVA_FIELDS and k not in _META_FIELDS}
    if fields.get("rope_scaling", 0) is None:  # 4.x wrote null; transformers 5 reads rope_theta alone
        del fields["rope_scaling"]
    try:
        return LlamaConfig(**fields)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"{path}: invalid Llama settings ({exc})") from None


def image_aspect_padding(config: dict[str, Any], path: Path) -> bool:
    """True when the official ``process_images`` pads to a square first (``image_aspect_ratio == "pad"``)."""
    aspect = config.get("image_aspect_ratio") or "square"
    if aspect not in ("pad", "square"):
        raise ModelLoadError(f"{path}: image_aspect_ratio {aspect!r} is not supported (INF-LLaVA uses 'pad')")
    return aspect == "pad"


def check_supported(config: dict[str, Any], path: Path) -> None:
    """Reject settings the official INF-LLaVA computation does not use (and this package does not implement)."""
    if config.get("mm_use_im_start_end") or config.get("mm_use_im_patch_token"):
        raise ModelLoadError(f"{path}: mm_use_im_start_end / mm_use_im_patch_token are not supported")
    feature = config.get("mm_vision_select_feature", "patch")
    if feature != "patch":
        raise ModelLoadError(f"{path}: mm_vision_select_feature {feature!r} is not supported (expected 'patch')")


# ---- the vision tower ---------------------------------------------------------------------------------------------
def vision_config_from_directory(directory: Path) -> PreTrainedConfig:
    """The vision config of a tower repository (a CLIPModel's ``vision_config`` or a vision model's own)."""
    try:
        config = AutoConfig.from_pretrained(directory)
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise ModelLoadError(f"{directory}: cannot read the vision tower config ({detail})") from None
    vision = getattr(config, "vision_config", None) or config
    if not hasattr(vision, "image_size") or not hasattr(vision, "patch_size"):
        raise ModelLoadError(f"{directory}: {type(config).__name__} is not a vision tower config")
    return vision


def vision_config_from_shapes(infos: dict[str, TensorInfo], name: str | None) -> tuple[CLIPVisionConfig, str]:
    """A CLIP vision config read off the embedded tower's tensor shapes, and a note saying so.

    Shapes fix the width, patch size, image size, depth and MLP size; the head count is not stored anywhere in the
    weights, so it follows CLIP's head size of 64 (true for every OpenAI CLIP; pass ``--vision-tower`` otherwise).
    """

    def shape(key: str) -> tuple[int, ...]:
        info = infos.get(OFFICIAL_VISION_PREFIX + key)
        if info is None:
            raise ModelLoadError(f"the embedded vision tower has no {OFFICIAL_VISION_PREFIX + key}")
        return info.shape

    width, channels, patch, _ = shape("embeddings.patch_embedding.weight")
    positions = shape("embeddings.position_embedding.weight")[0] - 1
    side = math.isqrt(positions)
    if side * side != positions:
        raise ModelLoadError(f"the embedded vision tower has {positions} patch positions, not a square grid")
    layer_key = re.compile(re.escape(OFFICIAL_VISION_PREFIX) + r"encoder\.layers\.(\d+)\.")
    layers = 1 + max((int(m.group(1)) for key in infos if (m := layer_key.match(key))), default=-1)
    if layers < 1:
        raise ModelLoadError(f"the embedded vision tower has no {OFFICIAL_VISION_PREFIX}encoder.layers.* weights")
    inferred = {
        "hidden_size": width,
        "intermediate_size": shape("encoder.layers.0.mlp.fc1.weight")[0],
        "num_hidden_layers": layers,
        "num_attention_heads": max(1, width // CLIP_HEAD_DIM),
        "num_channels": channels,
        "image_size": side * patch,
        "patch_size": patch,
    }
    if name == OFFICIAL_CLIP and all(CLIP_L14_336[k] == v for k, v in inferred.items() if k in CLIP_L14_336):
        return CLIPVisionConfig(**CLIP_L14_336), f"vision config: {OFFICIAL_CLIP} (matches the embedded weights)"
    if width % CLIP_HEAD_DIM:
        raise ModelLoadError(
            f"the embedded vision tower is {width} wide, not a multiple of CLIP's head size {CLIP_HEAD_DIM}, so its "
            "head count cannot be inferred; pass --vision-tower with the tower's config directory"
        )
    config = CLIPVisionConfig(**{**CLIP_L14_336, **inferred})
    note = (
        f"vision config: inferred from the embedded weights ({layers} layers, width {width}, "
        f"{inferred['num_attention_heads']} heads assuming CLIP's head size {CLIP_HEAD_DIM}, "
        f"{side * patch}px / {patch}px patches); pass --vision-tower to read it from the tower's config instead"
    )
    return config, note


def image_normalisation(directory: Path | None) -> tuple[list[float], list[float]]:
    """``image_mean`` / ``image_std`` of the tower's image processor (CLIP's when unknown)."""
    if directory is not None:
        path = directory / "preprocessor_config.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                return [float(x) for x in data["image_mean"]], [float(x) for x in data["image_std"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise ModelLoadError(f"{path}: unreadable image_mean / image_std ({exc})") from None
    return list(CLIP_MEAN), list(CLIP_STD)


def dem_ffn_ratio(infos: dict[str, TensorInfo], width: int) -> int:
    """``d / hidden`` of the DEM branch FFNs (16 in the release), read off ``ffn_crop.0.weight``."""
    info = infos.get(OFFICIAL_DEM_PREFIX + "ffn_crop.0.weight")
    if info is None or len(info.shape) != 2 or info.shape[0] < 1:
        return 16  # the missing/odd tensor is reported by the key check
    hidden = info.shape[0]
    if width % hidden:
        raise ModelLoadError(f"{info.file}: {info.name} has shape {info.shape}, which does not divide width {width}")
    return width // hidden


# ---- image token --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageTokenChoice:
    """The token whose id marks image slots, and how it was chosen (``reserved``, ``pad`` or ``added``)."""

    token: str
    token_id: int
    kind: str

    def describe(self, vocab_size: int) -> str:
        what = {
            "reserved": "an unused reserved special token",
            "pad": "the padding token (official prompts never contain it; batches pad with the EOS id instead)",
            "added": "a new token: the tokenizer had no reserved or padding token to reuse",
        }[self.kind]
        unchanged = "vocabulary and logits unchanged" if self.token_id < vocab_size else "one embedding row added"
        return f"image token: {self.token} (id {self.token_id}, {what}; {unchanged})"


def choose_image_token(tokenizer, vocab_size: int) -> ImageTokenChoice:
    """Pick the image token (see the module docstring); may add a token to ``tokenizer`` as a last resort."""
    taken = {tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id}

    def token_id(token: str) -> int | None:
        found = tokenizer.convert_tokens_to_ids(token)
        if not isinstance(found, int) or found in taken or found >= vocab_size:
            return None
        return found if tokenizer.convert_ids_to_tokens(found) == token else None  # not an unknown-token fallback

    if (found := token_id(PREFERRED_IMAGE_TOKEN)) is not None:
        return ImageTokenChoice(PREFERRED_IMAGE_TOKEN, found, "reserved")
    # Reserved tokens are added (special) tokens in Llama-3-style tokenizers; scanning those avoids the full vocab.
    candidates = tokenizer.get_added_vocab() or tokenizer.get_vocab()
    reserved = sorted((int(m.group(1)), t) for t in candidates if (m := _RESERVED.match(t)))
    for _, token in reserved:
        if (found := token_id(token)) is not None:
            return ImageTokenChoice(token, found, "reserved")
    pad = tokenizer.pad_token
    if pad is not None and (found := token_id(pad)) is not None:
        return ImageTokenChoice(pad, found, "pad")
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(ADDED_IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    return ImageTokenChoice(ADDED_IMAGE_TOKEN, tokenizer.convert_tokens_to_ids(ADDED_IMAGE_TOKEN), "added")


# ---- assembled pieces ---------------------------------------------------------------------------------------------
def build_config(
    official: dict[str, Any],
    path: Path,
    text_config: LlamaConfig,
    vision_config: PreTrainedConfig,
    image_token_id: int,
    ffn_ratio: int,
) -> InfLlavaConfig:
    """The :class:`InfLlavaConfig` of a released checkpoint: the official geometry (3x3 grid), feature layer and
    projector from ``config.json``, the DEM in the official op order (``eager``) for parity."""
    width = vision_config.hidden_size
    if official.get("mm_hidden_size") not in (None, width):
        raise ModelLoadError(f"{path}: mm_hidden_size is {official['mm_hidden_size']} but the vision tower is {width}")
    try:
        config = InfLlavaConfig(
            vision_config=vision_config.to_dict(),
            text_config=text_config.to_dict(),
            grid=OFFICIAL_GRID,
            vision_feature_layer=int(official.get("mm_vision_select_layer", -2)),
            vision_feature_select_strategy="patch",
            dem_num_heads=OFFICIAL_DEM_HEADS,
            dem_ffn_ratio=ffn_ratio,
            dem_attn_implementation="eager",
            projector_type=official.get("mm_projector_type", "linear"),
            image_token_id=image_token_id,
            tie_word_embeddings=bool(official.get("tie_word_embeddings", False)),
        )
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    config.architectures = ["InfLlavaForConditionalGeneration"]
    return config


def build_processor(
    config: InfLlavaConfig,
    tokenizer,
    image_token: ImageTokenChoice,
    *,
    mode: str,
    pad_to_square: bool,
    image_mean: list[float],
    image_std: list[float],
) -> InfLlavaProcessor:
    """The ``llama3`` processor; ``mode`` ``high_res`` (official training path) or ``base`` (official inference)."""
    image_processor = InfLlavaImageProcessor.for_geometry(
        config.geometry, mode, pad_to_square=pad_to_square, image_mean=image_mean, image_std=image_std
    )
    return InfLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        geometry=config.geometry.to_dict(),
        image_token=image_token.token,
        template="llama3",
    )


def build_generation_config(directory: Path, text_config: LlamaConfig, tokenizer, image_token: ImageTokenChoice):
    """The checkpoint's ``generation_config.json`` (inherited from Llama-3-Instruct: EOS ``[128001, 128009]``), or
    the same stop ids looked up in the tokenizer when the file is missing; padding never uses the image id."""
    path = directory / "generation_config.json"
    if path.is_file():
        try:
            generation = GenerationConfig.from_pretrained(directory)
        except Exception as exc:
            raise ModelLoadError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    else:
        stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eot_id|>")]
        eos = [i for i in stops if isinstance(i, int) and i != tokenizer.unk_token_id]
        if not eos and text_config.eos_token_id is not None:
            configured = text_config.eos_token_id
            eos = list(configured) if isinstance(configured, list) else [configured]
        generation = GenerationConfig(bos_token_id=text_config.bos_token_id, eos_token_id=eos or None)
    pad = text_config.pad_token_id
    if pad is None or pad == image_token.token_id:
        eos = generation.eos_token_id
        pad = eos[0] if isinstance(eos, list) and eos else eos
    generation.pad_token_id = pad
    if image_token.kind == "added":
        generation.suppress_tokens = [image_token.token_id]
    return generation
