"""Miniature checkpoints in the layout of the released INF-LLaVA models (spec 12), written from scratch.

What is real: the key names of transformers 4.x (``model.layers.*``, ``model.embed_tokens``, ``lm_head``,
``model.mm_projector.*``, ``model.spatial_embed.*``, ``model.vision_tower.vision_tower.vision_model.*``), the
``config.json`` fields of a ``llava_llama`` sft model, the inherited ``generation_config.json``, bf16 storage, shards
with an index (or one file, or ``.bin`` pickles), the CLIP geometry (336 px views, 14 px patches: 1008 px input, 576
image tokens) and the Meta-Llama-3-8B-Instruct tokenizer itself: its BPE ranks ship in the ``llama-models`` package,
its special tokens are rebuilt at their real ids, and the INF-LLaVA ``<pad>`` is added as id 128256 (vocabulary
128257). What is small: the widths and depths (CLIP 128 wide with 2 layers, Llama 64 wide with 2 layers).

The CLIP tower is embedded (``mm_vision_tower`` then names the hub CLIP, unavailable offline), or written as a
separate CLIPModel repository that ``mm_vision_tower`` points to, or both (the release: embedded bf16 copies, while
the official loader reads the repository's fp32 weights).
"""

from __future__ import annotations

import atexit
import base64
import functools
import importlib.util
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from reference.official_dem import SpatialEmbed
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM

VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
HUB_CLIP = "openai/clip-vit-large-patch14-336"
BOS, EOS_TEXT, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
# Meta-Llama-3-8B-Instruct's 256 special tokens, in id order from 128000.
LLAMA3_SPECIALS = [
    BOS,
    EOS_TEXT,
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|reserved_special_token_2|>",
    "<|reserved_special_token_3|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|reserved_special_token_4|>",
    EOT,
] + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
NAMED_SPECIALS = [BOS, EOS_TEXT, "<|start_header_id|>", "<|end_header_id|>", EOT]


@dataclass(frozen=True)
class FixtureSpec:
    """Sizes of the miniature model. The geometry (336 / 14, grid 3) is the released one."""

    vision_width: int = 128
    vision_layers: int = 2  # the tower is built with 1 layer (feature layer -2); the last one is dropped
    vision_heads: int = 2  # CLIP's head size 64, so the shapes alone determine the config
    image_size: int = 336
    patch_size: int = 14
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate: int = 128
    lm_head_std: float = 0.5  # spread-out logits: greedy decoding has clear winners
    seed: int = 0

    def vision_config(self) -> CLIPVisionConfig:
        return CLIPVisionConfig(
            hidden_size=self.vision_width,
            intermediate_size=4 * self.vision_width,
            num_hidden_layers=self.vision_layers,
            num_attention_heads=self.vision_heads,
            image_size=self.image_size,
            patch_size=self.patch_size,
            projection_dim=32,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
        )


@dataclass
class OfficialFixture:
    """A written checkpoint: its directory, the CLIP repository (if separate) and the official-named weights."""

    path: Path
    spec: FixtureSpec
    config: dict
    clip_path: Path | None
    weights: dict[str, torch.Tensor] = field(repr=False)  # official names, including the tower, in stored dtype


# ---- tokenizer ------------------------------------------------------------------------------------------------
def _llama3_ranks_file() -> Path:
    spec = importlib.util.find_spec("llama_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the llama-models package (dev extra) is needed for the Llama-3 tokenizer fixture")
    return Path(list(spec.submodule_search_locations)[0]) / "llama3" / "tokenizer.model"


@functools.cache
def _llama3_base_json() -> str:
    """The Llama-3 byte-level BPE (128000 tokens) converted from the tiktoken ranks file, without special tokens."""
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = {}
    for line in _llama3_ranks_file().read_bytes().splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(tiktoken_url):  # the ranks file above, without tiktoken
            return ranks

    return _Converter(vocab_file="llama3").converted().to_str()


@functools.cache
def _llama3_backend(kind: str) -> tuple[str, tuple[tuple[str, int], ...]]:
    """tokenizer.json text of a Llama-3 tokenizer variant and its added tokens ``(content, id)``."""
    from tokenizers import AddedToken, Tokenizer, processors

    specials = LLAMA3_SPECIALS if kind == "llama3" else NAMED_SPECIALS
    backend = Tokenizer.from_str(_llama3_base_json())
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    if kind != "bare":
        backend.add_special_tokens([AddedToken("<pad>", special=True, normalized=False)])
    bos_id = backend.token_to_id(BOS)
    # Llama-3's post-processor: byte-level offsets, then an automatic BOS (the source of the double BOS).
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS} $A", pair=f"{BOS} $A {BOS}:1 $B:1", special_tokens=[(BOS, bos_id)]
            ),
        ]
    )
    added = tuple(sorted(((t.content, i) for i, t in backend.get_added_tokens_decoder().items()), key=lambda x: x[1]))
    return backend.to_str(), added


def write_llama3_tokenizer(directory: Path, kind: str = "llama3") -> dict[str, int | None]:
    """Write tokenizer files as transformers 4.x saved them for INF-LLaVA; returns the vocabulary size and the ids
    of BOS, ``<|end_of_text|>``, ``<|eot_id|>`` and ``<pad>``.

    ``kind``: ``llama3`` (Meta-Llama-3-8B-Instruct + ``<pad>``), ``no_reserved`` (no reserved tokens, ``<pad>``
    kept), ``bare`` (no reserved tokens and no pad).
    """
    pad = None if kind == "bare" else "<pad>"
    text, added = _llama3_backend(kind)
    (directory / "tokenizer.json").write_text(text)
    flags = {"lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
    config = {
        "added_tokens_decoder": {str(i): {"content": content, **flags} for content, i in added},
        "bos_token": BOS,
        "clean_up_tokenization_spaces": True,
        "eos_token": EOT,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 2048,
        "padding_side": "right",
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    special_map = {"bos_token": BOS, "eos_token": EOT}
    if pad is not None:
        config["pad_token"] = special_map["pad_token"] = pad
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2))
    ids = dict(added)
    return {
        "vocab": 1 + max(ids.values()),
        "bos": ids[BOS],
        "eos_text": ids[EOS_TEXT],
        "eot": ids[EOT],
        "pad": ids.get("<pad>"),
    }


# ---- weights --------------------------------------------------------------------------------------------------
def official_config(spec: FixtureSpec, ids: dict, mm_vision_tower: str) -> dict:
    """config.json of a released sft model (spec 12.2), miniature sizes; ``ids`` from the tokenizer."""
    return {
        "_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct",
        "architectures": ["LlavaLlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["eot"],
        "freeze_mm_mlp_adapter": False,
        "hidden_act": "silu",
        "hidden_size": spec.text_width,
        "image_aspect_ratio": "pad",
        "initializer_range": 0.02,
        "intermediate_size": spec.text_intermediate,
        "max_position_embeddings": 8192,
        "mm_hidden_size": spec.vision_width,
        "mm_patch_merge_type": "flat",
        "mm_projector_lr": None,
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": mm_vision_tower,
        "model_type": "llava_llama",
        "num_attention_heads": spec.text_heads,
        "num_hidden_layers": spec.text_layers,
        "num_key_value_heads": spec.text_kv_heads,
        "pad_token_id": ids["pad"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "tokenizer_model_max_length": 2048,
        "tokenizer_padding_side": "right",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.0",
        "tune_mm_mlp_adapter": False,
        "use_cache": True,
        "use_mm_proj": True,
        "vocab_size": ids["vocab"],
    }


def llama_config(config: dict) -> LlamaConfig:
    fields = {k: v for k, v in config.items() if not k.startswith(("mm_", "_")) and k in LlamaConfig().to_dict()}
    fields.update(rope_theta=config["rope_theta"], vocab_size=config["vocab_size"])
    return LlamaConfig(**fields)


@functools.cache
def random_weights(spec: FixtureSpec, vocab_size: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(official-named LLM + DEM + projector weights, CLIP vision_model weights without prefix), fp32; cached, so
    every variant of one spec holds the same weights (callers must not modify them)."""
    torch.manual_seed(spec.seed)
    ids = {"vocab": vocab_size, "bos": 0, "eot": 1, "pad": None}
    llm = LlamaForCausalLM(llama_config(official_config(spec, ids, HUB_CLIP)))
    with torch.no_grad():
        llm.lm_head.weight.normal_(0, spec.lm_head_std)
        llm.model.embed_tokens.weight.normal_(0, 1.0)
    weights = {k: v for k, v in llm.state_dict().items() if "rotary" not in k}
    dem = SpatialEmbed(spec.vision_width, heads=8, ratio=16)
    with torch.no_grad():
        for p in dem.parameters():  # trained-looking: away from the init's identical/identity values
            p.add_(torch.randn_like(p) * 0.05)
    weights.update({"model.spatial_embed." + k: v for k, v in dem.state_dict().items()})
    projector = nn.Sequential(
        nn.Linear(spec.vision_width, spec.text_width), nn.GELU(), nn.Linear(spec.text_width, spec.text_width)
    )
    weights.update({"model.mm_projector." + k: v for k, v in projector.state_dict().items()})
    tower = CLIPVisionModel(spec.vision_config())
    vision = {k: v for k, v in tower.state_dict().items() if k != "embeddings.position_ids"}
    return weights, vision


def _save(weights: dict[str, torch.Tensor], directory: Path, layout: str, shard_bytes: int | None = None) -> None:
    names = list(weights)
    if layout == "single":
        save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return
    if layout == "bin":
        torch.save(weights, directory / "pytorch_model.bin")
        return
    # Sharded: the LLM body, then the vision tower, then everything else (like the real 4-shard layout).
    groups = [
        [n for n in names if n.startswith("model.layers.") or n == "model.embed_tokens.weight"],
        [n for n in names if n.startswith(VISION_PREFIX)],
    ]
    groups.append([n for n in names if not any(n in g for g in groups)])
    groups = [g for g in groups if g]
    if shard_bytes is not None:  # size-based shards instead, as save_pretrained's max_shard_size
        groups, size = [[]], 0
        for name in names:
            nbytes = weights[name].numel() * weights[name].element_size()
            if groups[-1] and size + nbytes > shard_bytes:
                groups.append([])
                size = 0
            groups[-1].append(name)
            size += nbytes
    suffix = "safetensors" if layout == "sharded" else "bin"
    stem = "model" if suffix == "safetensors" else "pytorch_model"
    weight_map, total = {}, 0
    for number, group in enumerate(groups, start=1):
        file = f"{stem}-{number:05d}-of-{len(groups):05d}.{suffix}"
        part = {n: weights[n] for n in group}
        if suffix == "safetensors":
            save_file(part, str(directory / file), metadata={"format": "pt"})
        else:
            torch.save(part, directory / file)
        weight_map.update(dict.fromkeys(group, file))
        total += sum(t.numel() * t.element_size() for t in part.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / f"{stem}.{suffix}.index.json").write_text(json.dumps(index, indent=2))


def write_clip_repository(directory: Path, spec: FixtureSpec, vision: dict[str, torch.Tensor]) -> Path:
    """A CLIPModel repository like ``openai/clip-vit-large-patch14-336`` (fp32, text side included)."""
    directory.mkdir(parents=True, exist_ok=True)
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=49408)
    config = CLIPConfig(vision_config=spec.vision_config().to_dict(), text_config=text, projection_dim=32)
    torch.manual_seed(spec.seed + 1)
    model = CLIPModel(config)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("position_ids")}
    state.update({"vision_model." + k: v for k, v in vision.items()})
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    config_dict = config.to_dict()
    config_dict.update(architectures=["CLIPModel"], model_type="clip")
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2))
    preprocessor = {
        "crop_size": {"height": spec.image_size, "width": spec.image_size},
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "CLIPImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3,
        "size": {"shortest_edge": spec.image_size},
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return directory


def write_official_checkpoint(
    directory: Path,
    *,
    layout: str = "sharded",
    embed_vision: bool = True,
    clip_repository: bool | None = None,
    clip_directory: Path | None = None,
    spec: FixtureSpec = FixtureSpec(),
    tokenizer: str = "llama3",
    dtype: torch.dtype = torch.bfloat16,
    generation_config: bool = True,
    shard_bytes: int | None = None,
) -> OfficialFixture:
    """Write a released-layout checkpoint into ``directory``.

    Args:
        layout: ``sharded`` (safetensors + index), ``single`` (model.safetensors), ``bin`` (pytorch_model.bin) or
            ``bin_sharded`` (pytorch_model-*.bin + index).
        embed_vision: embed the CLIP weights under ``model.vision_tower.vision_tower.vision_model.*``.
        clip_repository: write a CLIP repository (``clip_directory``, default ``directory/../<name>-clip``) that
            ``mm_vision_tower`` points to (default: when the weights are not embedded); otherwise
            ``mm_vision_tower`` is the hub CLIP, unavailable here.
        tokenizer: see :func:`write_llama3_tokenizer`.
        dtype: stored dtype of the checkpoint (the released ones are bf16; the CLIP repository stays fp32).
        shard_bytes: for ``sharded``, cut shards by size instead of by model part.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ids = write_llama3_tokenizer(directory, tokenizer)
    weights, vision = random_weights(spec, ids["vocab"])
    clip_path = None
    if clip_repository if clip_repository is not None else not embed_vision:
        clip_path = write_clip_repository(clip_directory or directory.parent / f"{directory.name}-clip", spec, vision)
    config = official_config(spec, ids, HUB_CLIP if clip_path is None else str(clip_path))
    stored = {k: v.to(dtype) for k, v in weights.items()}
    if embed_vision:
        stored.update({VISION_PREFIX + k: v.to(dtype) for k, v in vision.items()})
    _save(stored, directory, layout, shard_bytes)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    if generation_config:
        generation = {
            "bos_token_id": ids["bos"],
            "do_sample": True,
            "eos_token_id": [ids["eos_text"], ids["eot"]],
            "max_length": 4096,
            "temperature": 0.6,
            "top_p": 0.9,
            "transformers_version": "4.40.0",
        }
        (directory / "generation_config.json").write_text(json.dumps(generation, indent=2))
    all_weights = dict(stored)
    if clip_path is not None:  # what the official loader uses: the repository's fp32 weights
        all_weights.update({VISION_PREFIX + k: v for k, v in vision.items()})
    return OfficialFixture(path=directory, spec=spec, config=config, clip_path=clip_path, weights=all_weights)


def write_adapter(path: Path, fixture: OfficialFixture) -> Path:
    """A stage-1 ``mm_projector.bin`` as released: 24 bf16 tensors (projector + DEM), a torch pickle."""
    keys = [k for k in fixture.weights if k.startswith(("model.mm_projector.", "model.spatial_embed."))]
    torch.save({k: fixture.weights[k].to(torch.bfloat16).clone() for k in keys}, path)
    return path


@functools.cache
def scratch_directory() -> Path:
    """A per-process temporary directory for cached fixtures (removed at exit)."""
    path = Path(tempfile.mkdtemp(prefix="inf-llava-official-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


# ---- fixtures shared by the test modules (built once per process) ---------------------------------------------------
VARIANTS = {
    "sharded": dict(layout="sharded"),
    "single": dict(layout="single"),
    "bin": dict(layout="bin"),
    "bin_sharded": dict(layout="bin_sharded"),
    "tower": dict(layout="single", embed_vision=False),  # CLIP weights only in the mm_vision_tower repository
    "both": dict(layout="single", clip_repository=True),  # embedded bf16 copies + the fp32 repository
}


@functools.cache
def checkpoint(variant: str = "sharded") -> OfficialFixture:
    """A released-layout checkpoint (same weights for every variant: the seed is fixed); do not modify it."""
    return write_official_checkpoint(scratch_directory() / "src" / variant, **VARIANTS[variant])


def converted(variant: str = "sharded", processor_mode: str = "high_res") -> Path:
    """``checkpoint(variant)`` converted with default options; do not modify it."""
    return _converted(variant, processor_mode)


def planned(variant: str = "sharded", processor_mode: str = "high_res"):
    """The conversion plan of ``checkpoint(variant)``; do not modify it."""
    return _planned(variant, processor_mode)


@functools.cache
def _planned(variant: str, processor_mode: str):
    from inf_llava.conversion.convert import plan_conversion

    return plan_conversion(checkpoint(variant).path, processor_mode=processor_mode)


@functools.cache
def _converted(variant: str, processor_mode: str) -> Path:
    return planned(variant, processor_mode).save(scratch_directory() / "dst" / f"{variant}-{processor_mode}")


@functools.cache
def loaded(variant: str = "sharded", processor_mode: str = "high_res"):
    """``(model, processor)`` loaded with plain ``from_pretrained`` from ``converted(...)``; do not modify them."""
    from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor

    directory = converted(variant, processor_mode)
    return InfLlavaForConditionalGeneration.from_pretrained(directory), InfLlavaProcessor.from_pretrained(directory)
