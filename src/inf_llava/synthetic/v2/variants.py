"""The ablation's model variants, one config override each, named after the paper's rows (spec section 17).

Every variant differs from INF-LLaVA (the official code's choices: DCM + DEM with both directions, bilinear pooling,
mean fusion with the low-resolution view) only in the fields listed in its ``overrides``:

- Table 6 (module ablation): ``dcm_local`` / ``dcm_global`` keep one cropping perspective and still use the DEM (its
  features in both DEM inputs, ``single_perspective_dem``); ``dcm_add`` adds both perspectives element-wise without a
  DEM (average pooling back to the base grid); ``inf_llava`` is "w/ DCM+DEM".
- Table 4 (DEM directions): ``dem_global`` / ``dem_local`` run one enhancement direction only (``dem_directions``).
- Paper vs official code: ``dem_avg_pool`` (the paper's ``F_pool`` is average pooling; the code resizes
  bilinearly), ``low_res_add`` (the paper adds the low-resolution features; the code averages) and ``paper_wording``
  (both).
- ``low_res``: the low-resolution view alone, LLaVA-1.5 style (Table 3's single-view row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str
    paper_row: str  # the row of the paper this variant reproduces
    overrides: dict[str, Any] = field(default_factory=dict)


_VARIANTS = (
    Variant("inf_llava", "Table 6 'w/ DCM+DEM' = Table 4 'DEM' (official code: bilinear pooling, mean fusion)"),
    Variant(
        "dcm_local",
        "Table 6 'w/ DCM local' (local crops + DEM)",
        {"perspectives": "local", "single_perspective_dem": True},
    ),
    Variant(
        "dcm_global",
        "Table 6 'w/ DCM global' (global crops + DEM)",
        {"perspectives": "global", "single_perspective_dem": True},
    ),
    Variant("dcm_add", "Table 6 'w/ DCM' (both crops added element-wise, no DEM)", {"perspective_fusion": "add"}),
    Variant(
        "dem_global", "Table 4 'DEM w/ global' (global-perspective enhancement only)", {"dem_directions": "global"}
    ),
    Variant("dem_local", "Table 4 'DEM w/ local' (local-perspective enhancement only)", {"dem_directions": "local"}),
    Variant("dem_avg_pool", "paper Eq. 7: F_pool = average pooling (code: bilinear resize)", {"dem_pooling": "avg"}),
    Variant("low_res_add", "paper Sec. 5.5.1: low-res features added (code: mean)", {"low_res_fusion": "add"}),
    Variant(
        "paper_wording",
        "the paper's wording: average pooling and addition",
        {"dem_pooling": "avg", "low_res_fusion": "add"},
    ),
    Variant(
        "low_res",
        "Table 3's single-view row (the low-resolution view alone, LLaVA-1.5 style)",
        {"perspectives": "none"},
    ),
)
VARIANTS: dict[str, Variant] = {v.name: v for v in _VARIANTS}
TABLE6 = ("dcm_local", "dcm_global", "dcm_add", "inf_llava")
TABLE4 = ("dem_global", "dem_local", "inf_llava")
OFFICIAL_VS_PAPER = ("inf_llava", "dem_avg_pool", "low_res_add", "paper_wording")


def variant_overrides(name: str) -> dict[str, Any]:
    """The config fields that make variant ``name`` (a copy); a ValueError names the known variants."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    return dict(VARIANTS[name].overrides)
