"""Parameter-name tables between the official INF-LLaVA code and this package (spec 5.2, 7, 12.1).

Every rename is listed explicitly; a key matching no rule is an error for the caller to report, never dropped.
"""

from __future__ import annotations

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
