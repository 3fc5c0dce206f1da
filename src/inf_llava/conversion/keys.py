"""Parameter-name tables between the official INF-LLaVA code and this package (spec 5.2, 7, 12.1).

Every rename is listed explicitly; a key matching no rule is an error for the caller to report, never dropped.
Keys that are deliberately not carried over (the CLIP layers after the feature layer, rebuilt buffers, the CLIP text
side) map to ``target=None`` with the reason, so a conversion can report them as intentional drops.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Official `SpatialEmbed` (under `model.spatial_embed.`) -> DualPerspectiveEnhancement (under
# `model.image_encoder.dem.`). Note the official names are swapped relative to what the branches do:
# `ffn_crop` is applied to C' (local-as-query outputs) and `ffn_stride` to S' (global-as-query outputs).
DEM_KEYS = {
    "attention.linears.0": "attention.q_proj",
    "attention.linears.1": "attention.k_proj",
    "attention.linears.2": "attention.v_proj",
    "attention.linears.3": "attention.o_proj",
    "attention.ln": "attention.norm",
    "ffn_crop": "ffn_local",
    "ffn_stride": "ffn_global",
    "ln_fuse": "norm",
}

OFFICIAL_DEM_PREFIX = "model.spatial_embed."
OFFICIAL_PROJECTOR_PREFIX = "model.mm_projector."
DEM_PREFIX = "model.image_encoder.dem."
PROJECTOR_PREFIX = "model.image_encoder.projector."


def dem_key_to_package(name: str) -> str:
    """``attention.linears.0.weight`` -> ``attention.q_proj.weight`` (names relative to the DEM module)."""
    for official, ours in DEM_KEYS.items():
        if name.startswith(official + "."):
            return ours + name[len(official) :]
    raise KeyError(f"unknown official DEM parameter {name!r}")


def dem_key_to_official(name: str) -> str:
    for official, ours in DEM_KEYS.items():
        if name.startswith(ours + "."):
            return official + name[len(ours) :]
    raise KeyError(f"unknown DEM parameter {name!r}")


# ---- released LlavaLlamaForCausalLM checkpoints (transformers 4.x names, spec 12.1) ---------------------------------
OFFICIAL_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
CLIP_VISION_PREFIX = "vision_model."  # a CLIPModel / 4.x CLIPVisionModel repository (mm_vision_tower)
TOWER_PREFIX = "model.image_encoder.vision_tower."
LM_PREFIX = "model.language_model."

# Parts of a CLIP repository that are not the vision tower (the text side, the contrastive heads).
CLIP_NON_VISION = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")

_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.")
_ROTARY = re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$")


@dataclass(frozen=True)
class KeyMapping:
    """Where one checkpoint tensor goes: ``target`` (a key of this package's state dict) or, when ``target`` is
    None, why it is intentionally dropped."""

    target: str | None
    group: str
    reason: str = ""


def map_official_key(name: str, tower_layers: int) -> KeyMapping:
    """A key of a released INF-LLaVA checkpoint -> its place in :class:`InfLlavaForConditionalGeneration`.

    ``tower_layers`` is the number of CLIP layers the package builds (up to the selected feature layer); later layers
    are reported as dropped. Raises KeyError for a key that no rule covers.
    """
    if name.startswith(OFFICIAL_VISION_PREFIX):
        return map_tower_key(name[len(OFFICIAL_VISION_PREFIX) :], tower_layers)
    if name.startswith(OFFICIAL_DEM_PREFIX):
        return KeyMapping(DEM_PREFIX + dem_key_to_package(name[len(OFFICIAL_DEM_PREFIX) :]), "DEM")
    if name.startswith(OFFICIAL_PROJECTOR_PREFIX):
        return KeyMapping(PROJECTOR_PREFIX + name[len(OFFICIAL_PROJECTOR_PREFIX) :], "projector")
    if _ROTARY.match(name):
        return KeyMapping(None, "language model", "rotary inv_freq buffer (recomputed from rope_theta)")
    if name.startswith(("model.embed_tokens.", "model.layers.", "model.norm.")):
        return KeyMapping(LM_PREFIX + name[len("model.") :], "language model")
    if name == "lm_head.weight":
        return KeyMapping(name, "language model")
    raise KeyError(name)


def map_tower_key(name: str, tower_layers: int) -> KeyMapping:
    """A vision-model key relative to the CLIP ``vision_model`` (``embeddings.*``, ``encoder.layers.N.*``, ...)."""
    if name == "embeddings.position_ids":
        return KeyMapping(None, "vision tower", "position_ids buffer (rebuilt at load)")
    layer = _LAYER.match(name)
    if layer and int(layer.group(1)) >= tower_layers:
        return KeyMapping(
            None,
            "vision tower",
            f"CLIP layers after the selected feature layer (the tower is built with {tower_layers} "
            f"layer{'s' if tower_layers != 1 else ''})",
        )
    return KeyMapping(TOWER_PREFIX + name, "vision tower")


def map_clip_repo_key(name: str, tower_layers: int) -> KeyMapping:
    """A key of the ``mm_vision_tower`` repository (CLIPModel, or a CLIPVisionModel with or without the
    ``vision_model.`` prefix) -> the package's tower. Raises KeyError for keys that are not CLIP's."""
    if name.startswith(CLIP_NON_VISION):
        return KeyMapping(None, "vision tower", "CLIP text model and projection heads (not part of the tower)")
    if name.startswith(CLIP_VISION_PREFIX):
        return map_tower_key(name[len(CLIP_VISION_PREFIX) :], tower_layers)
    if name.startswith(("embeddings.", "encoder.", "pre_layrnorm.", "post_layernorm.")):
        return map_tower_key(name, tower_layers)
    raise KeyError(name)
