"""The INF-LLaVA image encoder: DCM views -> one batched tower call -> DEM -> fusion with the base view -> projector.

Paper-to-code glossary: DCM (dual-perspective cropping) is :func:`~inf_llava.modeling.cropping.local_crops` /
:func:`~inf_llava.modeling.cropping.global_crops`; DEM (dual-perspective enhancement) is
:class:`~inf_llava.modeling.enhancement.DualPerspectiveEnhancement`; ``F_C`` (the connector) is the projector.

Shapes: ``B`` images, ``K = n_h * n_w``, ``S`` view size, ``T = p * p`` tokens per view, ``D`` vision width,
``H`` LM width. For the official model: K = 9, S = 336, T = 576, D = 1024, H = 4096.

The official ``encode_images`` (spec section 4) resizes the input to the high-resolution size (a no-op when it is
already that size), cuts 9 tiles and 9 strided views, adds a bicubic 336 view, runs the tower 19 times, fuses the
18 sub-image maps with the DEM, averages with the 336 view and projects. Here all views go through the tower in one
call, and for odd grids the low-resolution view is not encoded separately because it *is* the centre strided view
(bicubic downscaling by an odd factor with ``align_corners=False`` is an exact pick; spec section 6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import InfLlavaConfig
from .cropping import global_crops, local_crops
from .enhancement import DualPerspectiveEnhancement
from .projector import build_projector
from .vision_tower import build_vision_tower, patch_features


class InfLlavaImageEncoder(nn.Module):
    """``pixel_values (B, 3, h, w) -> (B, T, H)`` image features for the LLM."""

    def __init__(self, config: InfLlavaConfig):
        super().__init__()
        self.geometry = config.geometry
        self.use_low_res_view = config.use_low_res_view
        self.low_res_fusion = config.low_res_fusion
        width = config.vision_config.hidden_size
        self.vision_tower = build_vision_tower(config.vision_config, config.num_tower_layers)
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

    def views(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w) -> (B, V, 3, S, S)``: K local tiles, K strided views and, when the low-resolution view is
        used and is not one of the strided views, the bicubic base view."""
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        big = self.high_res(pixel_values)
        parts = [local_crops(big, self.geometry.grid), global_crops(big, self.geometry.grid)]
        if self.use_low_res_view and self.geometry.centre_view_index is None:
            low = F.interpolate(big.float(), size=self.geometry.base_size, mode="bicubic", align_corners=False)
            parts.append(low.to(big.dtype).unsqueeze(1))
        return torch.cat(parts, dim=1)

    # ---- tower + DEM + fusion ----------------------------------------------------------------------------------
    def view_features(self, views: torch.Tensor) -> torch.Tensor:
        """``(B, V, 3, S, S) -> (B, V, T, D)`` in one tower call; no autograd graph when the tower is frozen."""
        B, V = views.shape[:2]
        flat = views.flatten(0, 1)
        tower_trainable = any(p.requires_grad for p in self.vision_tower.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and tower_trainable):
            feats = patch_features(self.vision_tower, flat, self.geometry.tokens_per_view)
        return feats.unflatten(0, (B, V))

    def enhanced_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w) -> (B, T, D)``: DEM output fused with the low-resolution view, before the projector."""
        K = self.geometry.num_crops
        feats = self.view_features(self.views(pixel_values))
        dem_dtype = self.dem.norm.weight.dtype
        local_feats, global_feats = feats[:, :K].to(dem_dtype), feats[:, K : 2 * K].to(dem_dtype)
        enhanced = self.dem(local_feats, global_feats)
        if not self.use_low_res_view:
            return enhanced
        centre = self.geometry.centre_view_index
        low = feats[:, K + centre] if centre is not None else feats[:, 2 * K]
        low = low.to(enhanced.dtype)
        if self.low_res_fusion == "add":
            return low + enhanced
        # Official: stack and mean, which equals (f32(a) + f32(b)) / 2 rounded once to the feature dtype.
        return ((low.float() + enhanced.float()) / 2).to(enhanced.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        fused = self.enhanced_features(pixel_values)
        return self.projector(fused.to(self.projector[0].weight.dtype))
