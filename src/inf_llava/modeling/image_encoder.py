"""The INF-LLaVA image encoder: DCM views -> one batched tower call -> DEM -> fusion with the base view -> projector.

Paper-to-code glossary: DCM (dual-perspective cropping) is :func:`~inf_llava.modeling.cropping.local_crops` /
:func:`~inf_llava.modeling.cropping.global_crops`; DEM (dual-perspective enhancement) is
:class:`~inf_llava.modeling.enhancement.DualPerspectiveEnhancement`; ``F_C`` (the connector) is the projector.

Shapes: ``B`` images, ``K = n_h * n_w``, ``S`` view size, ``T = p * p`` tokens per view, ``D`` vision width,
``H`` LM width. For the official model: K = 9, S = 336, T = 576, D = 1024, H = 4096.

The official ``encode_images`` (spec section 4) resizes the input to the high-resolution size (a no-op when it is
already that size), cuts 9 tiles and 9 strided views, adds a bicubic 336 view, runs the tower 19 times, fuses the
18 sub-image maps with the DEM, averages with the 336 view and projects. Here the views go through the tower in one
call, and only the views that reach the output are encoded (spec section 6): for odd grids the low-resolution view
*is* the centre strided view (bicubic downscaling by an odd factor with ``align_corners=False`` is an exact pick), and
with the official bilinear pooling the DEM output depends on the 9 tiles and that centre view only. So the official
model needs 10 tower passes per image, not 19, for the same features.
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

    @property
    def centre_only(self) -> bool:
        """True when only the local tiles and the centre strided view reach the output (official bilinear pooling,
        odd grid): the other strided views, and the base view (equal to the centre one), are then not encoded."""
        return self.dem.centre_only_applies(self.geometry.patches_per_side)

    def views(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, h, w) -> (B, V, 3, S, S)``: the views the output depends on, in one tensor.

        Always the K local tiles first. Then, when :attr:`centre_only`, just the centre strided view (V = K + 1);
        otherwise all K strided views, plus the bicubic base view when it is used and is not a strided view."""
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        big = self.high_res(pixel_values)
        grid = self.geometry.grid
        parts = [local_crops(big, grid)]
        if self.centre_only:
            (c_h, c_w), (n_h, n_w) = self.geometry.centre_phase, grid
            parts.append(big[:, None, :, c_h::n_h, c_w::n_w])
        else:
            parts.append(global_crops(big, grid))
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
        local_feats = feats[:, :K].to(dem_dtype)
        if self.centre_only:
            low = feats[:, K]  # the centre strided view, which is also the bicubic base view
            enhanced = self.dem.forward_centre(local_feats, low.to(dem_dtype))
        else:
            enhanced = self.dem(local_feats, feats[:, K : 2 * K].to(dem_dtype))
            centre = self.geometry.centre_view_index
            low = feats[:, K + centre] if centre is not None else feats[:, -1]
        if not self.use_low_res_view:
            return enhanced
        low = low.to(enhanced.dtype)
        if self.low_res_fusion == "add":
            return low + enhanced
        # Official: stack and mean, which equals (f32(a) + f32(b)) / 2 rounded once to the feature dtype.
        return ((low.float() + enhanced.float()) / 2).to(enhanced.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        fused = self.enhanced_features(pixel_values)
        return self.projector(fused.to(self.projector[0].weight.dtype))
