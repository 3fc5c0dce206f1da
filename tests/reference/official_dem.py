"""Re-export of the from-spec official DEM reference (kept in the package so benchmarks can use it too)."""

from inf_llava.reference import (  # noqa: F401
    Attention,
    SpatialEmbed,
    polyphase_merge,
    polyphase_split,
    tile_merge,
    tile_split,
    to_package_state_dict,
)
