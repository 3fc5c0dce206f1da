"""The INF-LLaVA image encoder: DCM views -> one batched tower call -> DEM -> fusion with the base view -> projector.

Paper-to-code glossary: DCM (dual-perspective cropping) is :func:`~inf_llava.modeling.cropping.local_crops` /
:func:`~inf_llava.modeling.cropping.global_crops`; DEM (dual-perspective enhancement) is
:class:`~inf_llava.modeling.enhancement.DualPerspectiveEnhancement`; ``F_C`` (the connector) is the projector.

Shapes: ``B`` images, ``K = n_h * n_w``, ``S`` view size, ``T = p * p`` tokens per view, ``D`` vision width,
``H`` LM width (the official values follow from ``configuration.OFFICIAL_GEOMETRY`` and the tower/LM configs).

The official ``encode_images`` (spec section 4) resizes the input to the high-resolution size (a no-op when it is
already that size), cuts ``K`` tiles and ``K`` strided views, adds a bicubic base-size view, runs the tower
``2K + 1`` times, fuses the ``2K`` sub-image maps with the DEM, averages with the base view and projects. Here the
views go through the tower in one call, and only the views that reach the output are encoded (spec section 6): for
odd grids the low-resolution view *is* the centre strided view (bicubic downscaling by an odd factor with
``align_corners=False`` is an exact pick), and with the official bilinear pooling the DEM output depends on the ``K``
tiles and that centre view only. So the official model needs ``K + 1`` tower passes per image, not ``2K + 1``, for
the same features.

Ablation variants (paper Table 6, ``config.perspectives`` / ``config.perspective_fusion``): the low-resolution view
alone (LLaVA-1.5 style), local tiles only, strided views only, or both added element-wise instead of the DEM. Without
the DEM, the ``(n_h p, n_w p)`` map returns to ``(p, p)`` by average pooling (the paper's ``F_pool``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import InfLlavaConfig
from .cropping import global_crops, local_crops, merge_global, merge_local
from .enhancement import DualPerspectiveEnhancement
from .packed_linear import use_packed_linears
from .projector import build_projector
from .vision_tower import build_vision_tower, patch_features


@dataclass(frozen=True)
class ViewPlan:
    """Which views are encoded, in order: ``local`` tiles, then either all ``K`` strided views (``strided``) or
    just the centre one (``centre_only``), then the bicubic base view if it must be encoded separately."""

    local: bool
    strided: bool
    centre_only: bool
    extra_low: bool
    low_index: int | None  # index of the low-resolution view among the encoded views

    def count(self, num_crops: int) -> int:
        """How many views the tower encodes per image, for a grid of ``num_crops`` crops per perspective."""
        strided = num_crops if self.strided else int(self.centre_only)
        return num_crops * self.local + strided + int(self.extra_low)


class InfLlavaImageEncoder(nn.Module):
    """``pixel_values (B, 3, h, w) -> (B, T, H)`` image features for the LLM."""

    def __init__(self, config: InfLlavaConfig):
        super().__init__()
        self.geometry = config.geometry
        self.use_low_res_view = config.use_low_res_view
        self.low_res_fusion = config.low_res_fusion
        self.perspectives = config.perspectives
        self.perspective_fusion = config.perspective_fusion
        width = config.vision_config.hidden_size
        self.vision_tower = build_vision_tower(config.vision_config, config.num_tower_layers)
        self.feature_norm = nn.LayerNorm(width) if config.vision_feature_norm else None
        self.dem = None
        if self.uses_dem:
            self.dem = DualPerspectiveEnhancement(
                width,
                self.geometry.grid,
                num_heads=config.dem_num_heads,
                ffn_ratio=config.dem_ffn_ratio,
                pooling=config.dem_pooling,
                eps=config.dem_layer_norm_eps,
                attn_implementation=config.dem_attn_implementation,
            )
        self.projector = build_projector(config.projector_type, width, config.text_config.hidden_size)
        use_packed_linears(self)  # CPU bf16 inference: pre-packed weights where verified to give the same bits
        self.plan = self._plan()

    @property
    def uses_dem(self) -> bool:
        return self.perspectives == "both" and self.perspective_fusion == "dem"

    @property
    def centre_only(self) -> bool:
        """True when only the local tiles and the centre strided view reach the output (official bilinear pooling,
        odd grid): the other strided views, and the base view (equal to the centre one), are then not encoded."""
        return self.dem is not None and self.dem.centre_only_applies(self.geometry.patches_per_side)

    def _plan(self) -> ViewPlan:
        K = self.geometry.num_crops
        local = self.perspectives in ("both", "local")
        strided = self.perspectives in ("both", "global") and not self.centre_only
        centre = self.geometry.centre_view_index
        offset = K if local else 0
        if not self.use_low_res_view and self.perspectives != "none":
            low_index, extra_low = None, False
        elif self.centre_only:
            low_index, extra_low = offset, False
        elif strided and centre is not None:
            low_index, extra_low = offset + centre, False
        else:
            low_index, extra_low = offset + (K if strided else 0), True
        return ViewPlan(local, strided, self.centre_only, extra_low, low_index)

    # ---- DCM on pixels -----------------------------------------------------------------------------------------
    def high_res(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Bring pixels to the high-resolution size. A no-op for processor output at that size; otherwise (the
        official inference path feeds the base size) a bicubic resize computed in fp32 and cast back, as the
        official code does."""
        size = self.geometry.high_res_size
        if tuple(pixel_values.shape[-2:]) == size:
            return pixel_values
        resized = F.interpolate(pixel_values.float(), size=size, mode="bicubic", align_corners=False)
        return resized.to(pixel_values.dtype)

    def low_res(self, big: torch.Tensor) -> torch.Tensor:
        """The base view of a high-resolution batch: the official bicubic downscale (for odd grids the same as the
        centre strided view, taken directly)."""
        phase = self.geometry.centre_phase
        if phase is not None:
            (c_h, c_w), (n_h, n_w) = phase, self.geometry.grid
            return big[:, :, c_h::n_h, c_w::n_w]
        low = F.interpolate(big.float(), size=self.geometry.base_size, mode="bicubic", align_corners=False)
        return low.to(big.dtype)

    def views(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w) -> (B, V, 3, S, S)``: only the views the output depends on, in one tensor (see
        :class:`ViewPlan`); for the official model the 9 tiles and the centre strided view (V = 10)."""
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        big = self.high_res(pixel_values)
        grid, plan = self.geometry.grid, self.plan
        parts = []
        if plan.local:
            parts.append(local_crops(big, grid))
        if plan.centre_only:
            parts.append(self.low_res(big).unsqueeze(1))  # the centre strided view
        elif plan.strided:
            parts.append(global_crops(big, grid))
        if plan.extra_low:
            parts.append(self.low_res(big).unsqueeze(1))
        return torch.cat(parts, dim=1)

    # ---- tower + DEM + fusion ----------------------------------------------------------------------------------
    def view_features(self, views: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, S, S) -> (B, V, T, D)`` in one tower call; no autograd graph when the tower is frozen."""
        B, V = views.shape[:2]
        flat = views.flatten(0, 1)
        tower_trainable = any(p.requires_grad for p in self.vision_tower.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and tower_trainable):
            feats = patch_features(self.vision_tower, flat, self.geometry.tokens_per_view)
        if self.feature_norm is not None:
            feats = self.feature_norm(feats)
        return feats.unflatten(0, (B, V))

    def high_res_features(self, feats: torch.Tensor) -> torch.Tensor | None:
        """``(B, V, T, D) -> (B, T, D)``: the high-resolution branch (DEM, or the ablation fusions), or None for the
        low-resolution-only variant."""
        K, plan = self.geometry.num_crops, self.plan
        if self.perspectives == "none":
            return None
        local = feats[:, :K] if plan.local else None
        start = K if plan.local else 0
        if self.dem is not None:
            dtype = self.dem.norm.weight.dtype
            if plan.centre_only:
                return self.dem.forward_centre(local.to(dtype), feats[:, start].to(dtype))
            return self.dem(local.to(dtype), feats[:, start : start + K].to(dtype))
        strided = feats[:, start : start + K] if plan.strided else None
        B, _, T, D = feats.shape
        p = self.geometry.patches_per_side
        grid = self.geometry.grid
        maps = []
        if local is not None:
            maps.append(merge_local(local.reshape(B, K, p, p, D), grid, channels_last=True))
        if strided is not None:
            maps.append(merge_global(strided.reshape(B, K, p, p, D), grid, channels_last=True))
        merged = maps[0] if len(maps) == 1 else maps[0] + maps[1]  # (B, n_h p, n_w p, D)
        pooled = F.avg_pool2d(merged.permute(0, 3, 1, 2), kernel_size=grid)  # (B, D, p, p)
        return pooled.permute(0, 2, 3, 1).reshape(B, T, D)

    def enhanced_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w) -> (B, T, D)``: the high-resolution branch fused with the low-resolution view, before the
        projector."""
        feats = self.view_features(self.views(pixel_values))
        enhanced = self.high_res_features(feats)
        low = feats[:, self.plan.low_index] if self.plan.low_index is not None else None
        if enhanced is None:
            return low
        if low is None:
            return enhanced
        low = low.to(enhanced.dtype)
        if self.low_res_fusion == "add":
            return low + enhanced
        # Official: stack and mean, which equals (f32(a) + f32(b)) / 2 rounded once to the feature dtype.
        return ((low.float() + enhanced.float()) / 2).to(enhanced.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        fused = self.enhanced_features(pixel_values)
        return self.projector(fused.to(self.projector[0].weight.dtype))

    def compile(self, *args, freeze: bool = False, **kwargs) -> None:
        """``torch.compile`` in place (``nn.Module.compile``: parameter names and outputs unchanged).

        ``freeze=True`` is for inference: calls made without gradients compile with inductor's weight freezing, so
        the weights become constants of the compiled graph (pre-packed for the CPU's matmul kernels, bias and
        residual additions fused into them, LayerNorm and the activation fused with their neighbours); the tower's
        CPU bf16 attention stays the exact blocked kernel (:mod:`.attention`). The compiled graphs may hold copies of
        the weights, so changing them after the first call is not supported: compile a fresh encoder instead.
        """
        super().compile(*args, **kwargs)
        if freeze:
            import torch._inductor.config as inductor_config

            compiled = self._compiled_call_impl  # what nn.Module.compile installed and __call__ uses

            def call_frozen(*call_args, **call_kwargs):
                # Dynamo reads the flag when it traces, inductor when it compiles: both happen inside a call.
                with inductor_config.patch(freezing=True):
                    return compiled(*call_args, **call_kwargs)

            self._compiled_call_impl = call_frozen
