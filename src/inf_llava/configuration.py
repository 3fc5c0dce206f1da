"""`InfLlavaConfig`: a composite HF config (any vision tower + any causal LM) plus the DCM/DEM settings.

Defaults reproduce the official INF-LLaVA (spec sections 4-7): CLIP-L/14-336 features from layer -2 without the class
token, a 3x3 grid (:data:`OFFICIAL_GEOMETRY`), an 8-head DEM whose output is resized bilinearly back to the base
grid, a low-resolution view fused by element-wise mean, and an ``mlp2x_gelu`` projector. Derived numbers (tokens per
image, high-resolution size, number of views) are properties computed by :class:`~inf_llava.geometry.Geometry`.
"""

from __future__ import annotations

import re
from typing import Any

from transformers import AutoConfig, PreTrainedConfig

try:  # transformers >= 5.20 declares sub-configs with their defaults
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # transformers 5.18-5.19: a plain class map, resolved in __post_init__
    SubConfigSpec = None

from .geometry import DYNAMIC, DynamicGeometry, Geometry, geometry_from_config, normalize_grid

# The official vision tower (spec section 2): its hub repository and its config.
CLIP_L14_336_REPO = "openai/clip-vit-large-patch14-336"
CLIP_L14_336 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
}
OFFICIAL_GRID = 3  # the DCM grid of the released model, n_h = n_w
# The released model's geometry; every official number (view, high-resolution size, tokens) is derived from it.
OFFICIAL_GEOMETRY = Geometry(OFFICIAL_GRID, OFFICIAL_GRID, CLIP_L14_336["image_size"], CLIP_L14_336["patch_size"])

# Sub-config defaults: model type when a dict or None gives none, and the fields of the default.
_SUB_CONFIG_DEFAULTS = {"vision_config": ("clip_vision_model", CLIP_L14_336), "text_config": ("llama", {})}

PROJECTOR_TYPE = re.compile(r"^(linear|mlp(\d+)x_gelu)$")
DEM_POOLING = ("bilinear", "avg")
LOW_RES_FUSION = ("mean", "add")
FEATURE_SELECT = ("patch",)
PERSPECTIVES = ("both", "local", "global", "none")
PERSPECTIVE_FUSION = ("dem", "add")
DEM_ATTENTION = ("sdpa", "eager")
DEM_DIRECTIONS = ("both", "global", "local")


class InfLlavaConfig(PreTrainedConfig):
    r"""Configuration of :class:`~inf_llava.InfLlavaForConditionalGeneration`.

    Args:
        vision_config: config of the vision tower (any HF vision model with ``image_size``/``patch_size``; default
            CLIP-L/14-336).
        text_config: config of the causal LM (any HF decoder; default Llama).
        grid: DCM grid, ``n`` or ``(n_h, n_w)``; the high-resolution input is ``(n_h * S, n_w * S)``. Or
            ``"dynamic"``: each image gets the candidate grid that fits its size and aspect ratio best
            (:func:`~inf_llava.geometry.select_grid`; docs/dynamic-grids.md), and ``pixel_values`` carry the tiles of
            each image with ``image_grids`` saying which grid it got.
        max_views: with ``grid="dynamic"``, the budget: at most this many sub-images per perspective
            (``n_h * n_w <= max_views``; default 9, the official 3x3's). Ignored for a fixed grid.
        grid_candidates: with ``grid="dynamic"``, the allowed grids as ``[[n_h, n_w], ...]`` (each within
            ``max_views``); default every grid within the budget.
        vision_feature_layer: index into the tower's hidden states (embeddings output first); the tower is built only
            up to this layer.
        vision_feature_select_strategy: ``"patch"``: the ``p * p`` patch tokens (a leading class token is dropped).
        vision_feature_norm: apply a (learned) LayerNorm to the selected tower features of every view before the DEM
            and the low-resolution fusion. Off in the official model (a pretrained tower's feature scale is fixed).
            For a tower trained from scratch, the low-resolution view's un-normalised features grow during training
            while the DEM output is LayerNorm-ed, so the mean fusion drowns the high-resolution branch; this option
            keeps both at one scale.
        use_low_res_view: also encode the whole image at the base size and fuse it with the DEM output.
        low_res_fusion: ``"mean"`` (official code) or ``"add"`` (the paper's wording).
        dem_num_heads: attention heads of the DEM cross-attention (official: 8).
        dem_ffn_ratio: the DEM branch FFNs map ``d -> d // ratio -> d // 2`` (official ratio 16).
        dem_pooling: how the ``(n_h p, n_w p)`` DEM map returns to ``(p, p)``: ``"bilinear"`` (official; for odd grids
            an exact pick of each block's centre token) or ``"avg"`` (true average pooling, the paper's wording).
        dem_layer_norm_eps: epsilon of the two DEM LayerNorms.
        dem_attn_implementation: ``"sdpa"`` (fused kernel) or ``"eager"`` (the official op order, for bit parity).
        projector_type: ``"mlp2x_gelu"`` (official), ``"mlpNx_gelu"`` or ``"linear"``.
        perspectives: which DCM perspectives feed the high-resolution branch: ``"both"`` (INF-LLaVA), ``"local"``
            tiles only, ``"global"`` strided views only, or ``"none"`` (the low-resolution view alone, LLaVA-1.5
            style). The paper's Table 6 ablations.
        perspective_fusion: with both perspectives, ``"dem"`` (INF-LLaVA) or ``"add"`` (element-wise sum, no DEM).
            With one perspective and ``single_perspective_dem`` off, its map is average pooled (no DEM).
        single_perspective_dem: with ``perspectives="local"`` or ``"global"``, run the DEM on that perspective alone
            (its features fill both DEM inputs): the paper's Table 6 rows "w/ DCM local" and "w/ DCM global", which
            still use the DEM. Off by default (the earlier single-perspective variants pool without a DEM).
        dem_directions: ``"both"`` (INF-LLaVA) or one DEM enhancement direction only: ``"global"`` (global features
            query the local ones, the paper's "DEM w/ global") or ``"local"`` ("DEM w/ local"); Table 4.
        image_token_id: vocabulary id whose slots receive image features.
        tie_word_embeddings: tie ``lm_head`` to the input embeddings.
    """

    model_type = "inf_llava"
    if SubConfigSpec is not None:
        sub_configs_defaults = {
            "vision_config": SubConfigSpec(
                config_class=AutoConfig,
                model_type=_SUB_CONFIG_DEFAULTS["vision_config"][0],
                init_kwargs=dict(CLIP_L14_336),
            ),
            "text_config": SubConfigSpec(config_class=AutoConfig, model_type=_SUB_CONFIG_DEFAULTS["text_config"][0]),
        }
    else:
        sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    vision_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    grid: int | list[int] | str = OFFICIAL_GRID
    max_views: int = 9
    grid_candidates: list[list[int]] | None = None
    vision_feature_layer: int = -2
    vision_feature_select_strategy: str = "patch"
    vision_feature_norm: bool = False
    use_low_res_view: bool = True
    low_res_fusion: str = "mean"
    dem_num_heads: int = 8
    dem_ffn_ratio: int = 16
    dem_pooling: str = "bilinear"
    dem_layer_norm_eps: float = 1e-5
    dem_attn_implementation: str = "sdpa"
    projector_type: str = "mlp2x_gelu"
    perspectives: str = "both"
    perspective_fusion: str = "dem"
    single_perspective_dem: bool = False
    dem_directions: str = "both"
    image_token_id: int | None = None
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        for key in _SUB_CONFIG_DEFAULTS:
            setattr(self, key, _sub_config(key, getattr(self, key)))
        super().__post_init__(**kwargs)
        if not isinstance(self.grid, str):
            self.grid = list(normalize_grid(self.grid))
        if self.grid_candidates is not None:
            self.grid_candidates = [list(normalize_grid(g)) for g in self.grid_candidates]
        self.validate_settings()

    def validate_settings(self) -> None:
        """Raise a ValueError naming the first inconsistent setting."""
        if isinstance(self.grid, str) and self.grid != DYNAMIC:
            raise ValueError(f"grid must be an int, a pair (n_h, n_w) or 'dynamic', got {self.grid!r}")
        if self.grid != DYNAMIC and self.grid_candidates is not None:
            raise ValueError("grid_candidates applies only with grid='dynamic'")
        self.geometry  # noqa: B018 - validates the grid(s), the view and patch sizes
        width = self.vision_config.hidden_size
        if self.dem_num_heads < 1 or width % self.dem_num_heads:
            raise ValueError(f"dem_num_heads={self.dem_num_heads} does not divide the vision width {width}")
        if width % 2:
            raise ValueError(f"the DEM halves the vision width in each branch; width {width} is odd")
        if self.dem_ffn_ratio < 1 or width // self.dem_ffn_ratio < 1:
            raise ValueError(f"dem_ffn_ratio={self.dem_ffn_ratio} leaves no hidden units for width {width}")
        _check_choice("dem_pooling", self.dem_pooling, DEM_POOLING)
        _check_choice("low_res_fusion", self.low_res_fusion, LOW_RES_FUSION)
        _check_choice("vision_feature_select_strategy", self.vision_feature_select_strategy, FEATURE_SELECT)
        _check_choice("dem_attn_implementation", self.dem_attn_implementation, DEM_ATTENTION)
        _check_choice("perspectives", self.perspectives, PERSPECTIVES)
        _check_choice("perspective_fusion", self.perspective_fusion, PERSPECTIVE_FUSION)
        _check_choice("dem_directions", self.dem_directions, DEM_DIRECTIONS)
        if self.single_perspective_dem and self.perspectives not in ("local", "global"):
            raise ValueError(
                f"single_perspective_dem applies only with perspectives 'local' or 'global', got {self.perspectives!r}"
            )
        if self.dem_directions != "both" and not self.uses_dem:
            raise ValueError(f"dem_directions={self.dem_directions!r} needs a DEM, and this configuration has none")
        if self.perspectives == "none" and not self.use_low_res_view:
            raise ValueError("perspectives='none' keeps only the low-resolution view; use_low_res_view must be True")
        if not PROJECTOR_TYPE.match(str(self.projector_type)):
            raise ValueError(
                f"unknown projector_type {self.projector_type!r}; expected 'linear' or 'mlp<N>x_gelu' (e.g. mlp2x_gelu)"
            )
        self.num_tower_layers  # noqa: B018 - validates vision_feature_layer
        vocab = getattr(self.text_config, "vocab_size", None)
        if self.image_token_id is not None and vocab is not None and not 0 <= self.image_token_id < vocab:
            raise ValueError(f"image_token_id={self.image_token_id} is outside the LM vocabulary of {vocab} tokens")

    # ---- derived geometry (never separate knobs) -------------------------------------------------------------
    @property
    def geometry(self) -> Geometry | DynamicGeometry:
        """A :class:`Geometry` for a fixed grid, a :class:`DynamicGeometry` for ``grid="dynamic"``."""
        return geometry_from_config(self)

    @property
    def uses_dem(self) -> bool:
        """Whether the image encoder has a DEM: both perspectives fused by it, or one perspective with
        ``single_perspective_dem``."""
        if self.perspectives == "both":
            return self.perspective_fusion == "dem"
        return self.perspectives in ("local", "global") and self.single_perspective_dem

    @property
    def is_dynamic(self) -> bool:
        return self.grid == DYNAMIC

    @property
    def tokens_per_image(self) -> int:
        """Image-token slots per image in the prompt (one view's patch count, :attr:`Geometry.tokens_per_image`;
        the same for every grid)."""
        return self.geometry.tokens_per_image

    @property
    def high_res_size(self) -> tuple[int, int]:
        """(height, width) of the high-resolution input (grid times view size, :attr:`Geometry.high_res_size`)."""
        if self.is_dynamic:
            raise ValueError("grid='dynamic' has a high-resolution size per image: use config.geometry.for_image(h, w)")
        return self.geometry.high_res_size

    @property
    def num_views(self) -> int:
        """Views per image in the official computation: ``2 * n_h * n_w`` sub-images plus the low-resolution view
        (the model encodes fewer: only those that reach the output); for dynamic grids, the most any image gets."""
        return 2 * self.geometry.max_crops + int(self.use_low_res_view)

    @property
    def num_tower_layers(self) -> int:
        """Encoder layers the tower needs to produce ``hidden_states[vision_feature_layer]``."""
        total = self.vision_config.num_hidden_layers
        layer = self.vision_feature_layer
        index = layer + total + 1 if layer < 0 else layer
        if not 1 <= index <= total:
            raise ValueError(
                f"vision_feature_layer={layer} does not select an encoder layer output of a {total}-layer tower "
                f"(valid: 1..{total} or -{total}..-1)"
            )
        return index


def _sub_config(key: str, value: dict | PreTrainedConfig | None) -> PreTrainedConfig:
    """A sub-config from a config, a dict (its ``model_type`` or the default one) or None (the default), the same
    way on every supported transformers release (5.20 added ``SubConfigSpec``, which does this in the base class)."""
    if isinstance(value, PreTrainedConfig):
        return value
    model_type, defaults = _SUB_CONFIG_DEFAULTS[key]
    if value is None:
        value = dict(defaults)
    if not isinstance(value, dict):
        raise TypeError(f"{key} must be a dict, a PreTrainedConfig or None, got {type(value).__name__}")
    fields = dict(value)
    return AutoConfig.for_model(fields.pop("model_type", model_type), **fields)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
