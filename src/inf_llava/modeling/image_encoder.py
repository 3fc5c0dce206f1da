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

Dynamic grids (``grid="dynamic"``, docs/dynamic-grids.md): ``pixel_values`` are ``(B, K_max, 3, S, S)`` tiles and
``image_grids`` ``(B, 2)`` gives each image's grid. Each image's canvas is rebuilt from its tiles (exact), the views
of every image go through the tower in one call, and the DEM and the fusion run per grid on the same code path as a
fixed grid of that shape; each image still gives ``T = p * p`` tokens. The low-resolution view is the official
bicubic resize of the image's canvas to ``(S, S)`` (for odd grids the centre strided view, exactly), so it is aligned
token for token with the DEM output pooled from ``(n_h p, n_w p)`` to ``(p, p)``.

Ablation variants (paper Table 6, ``config.perspectives`` / ``config.perspective_fusion``): the low-resolution view
alone (LLaVA-1.5 style), local tiles only, strided views only, or both added element-wise instead of the DEM. Without
the DEM, the ``(n_h p, n_w p)`` map returns to ``(p, p)`` by average pooling (the paper's ``F_pool``). With
``config.single_perspective_dem`` one perspective goes through the DEM alone (its features in both DEM inputs; Table 6
rows "w/ DCM local/global"), and ``config.dem_directions`` keeps one DEM direction only (Table 4).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..configuration import InfLlavaConfig
from ..geometry import Geometry
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
        self._uses_dem = config.uses_dem
        width = config.vision_config.hidden_size
        self.vision_tower = build_vision_tower(config.vision_config, config.num_tower_layers)
        self.feature_norm = nn.LayerNorm(width) if config.vision_feature_norm else None
        self.dem = None
        if self.uses_dem:
            self.dem = DualPerspectiveEnhancement(
                width,
                None if self.geometry.is_dynamic else self.geometry.grid,
                num_heads=config.dem_num_heads,
                ffn_ratio=config.dem_ffn_ratio,
                pooling=config.dem_pooling,
                eps=config.dem_layer_norm_eps,
                attn_implementation=config.dem_attn_implementation,
                directions=config.dem_directions,
            )
        self.projector = build_projector(config.projector_type, width, config.text_config.hidden_size)
        use_packed_linears(self)  # CPU bf16 inference: pre-packed weights where verified to give the same bits
        self._plans: dict[tuple[int, int], ViewPlan] = {}
        self.plan = None if self.geometry.is_dynamic else self.plan_for(self.geometry)

    @property
    def uses_dem(self) -> bool:
        return self._uses_dem

    @property
    def is_dynamic(self) -> bool:
        return self.geometry.is_dynamic

    @property
    def centre_only(self) -> bool:
        """True when only the local tiles and the centre strided view reach the output (official bilinear pooling,
        odd grid): the other strided views, and the base view (equal to the centre one), are then not encoded."""
        return self.centre_only_for(self._fixed("centre_only"))

    def centre_only_for(self, geometry: Geometry) -> bool:
        """:attr:`centre_only` for one grid's geometry."""
        return (
            self.dem is not None
            and self.perspectives == "both"
            and self.dem.centre_only_applies(geometry.patches_per_side, geometry.grid)
        )

    def _fixed(self, what: str) -> Geometry:
        if self.geometry.is_dynamic:
            raise ValueError(f"{what} depends on the grid, and this encoder chooses one per image; pass a geometry")
        return self.geometry

    def _geometry(self, geometry: Geometry | None) -> Geometry:
        return self._fixed("this step") if geometry is None else geometry

    def plan_for(self, geometry: Geometry) -> ViewPlan:
        """The :class:`ViewPlan` of one grid (cached)."""
        plan = self._plans.get(geometry.grid)
        if plan is None:
            plan = self._plans[geometry.grid] = self._plan(geometry)
        return plan

    def views_per_image(self, geometry: Geometry | None = None) -> int:
        """Tower passes per image for one grid (the ``V`` of :meth:`views`): ``K + 1`` for the official model."""
        geometry = self._geometry(geometry)
        return self.plan_for(geometry).count(geometry.num_crops)

    def _plan(self, geometry: Geometry) -> ViewPlan:
        K = geometry.num_crops
        centre_only = self.centre_only_for(geometry)
        local = self.perspectives in ("both", "local")
        strided = self.perspectives in ("both", "global") and not centre_only
        centre = geometry.centre_view_index
        offset = K if local else 0
        if not self.use_low_res_view and self.perspectives != "none":
            low_index, extra_low = None, False
        elif centre_only:
            low_index, extra_low = offset, False
        elif strided and centre is not None:
            low_index, extra_low = offset + centre, False
        else:
            low_index, extra_low = offset + (K if strided else 0), True
        return ViewPlan(local, strided, centre_only, extra_low, low_index)

    # ---- DCM on pixels -----------------------------------------------------------------------------------------
    def high_res(self, pixel_values: torch.Tensor, geometry: Geometry | None = None) -> torch.Tensor:
        """Bring pixels to the high-resolution size. A no-op for processor output at that size; otherwise (the
        official inference path feeds the base size) a bicubic resize computed in fp32 and cast back, as the
        official code does."""
        size = self._geometry(geometry).high_res_size
        if tuple(pixel_values.shape[-2:]) == size:
            return pixel_values
        resized = F.interpolate(pixel_values.float(), size=size, mode="bicubic", align_corners=False)
        return resized.to(pixel_values.dtype)

    def low_res(self, big: torch.Tensor, geometry: Geometry | None = None) -> torch.Tensor:
        """The base view of a high-resolution batch: the official bicubic downscale of the whole ``(n_h S, n_w S)``
        canvas to ``(S, S)`` (for odd grids the same as the centre strided view, taken directly)."""
        geometry = self._geometry(geometry)
        phase = geometry.centre_phase
        if phase is not None:
            (c_h, c_w), (n_h, n_w) = phase, geometry.grid
            return big[:, :, c_h::n_h, c_w::n_w]
        low = F.interpolate(big.float(), size=geometry.base_size, mode="bicubic", align_corners=False)
        return low.to(big.dtype)

    def views(self, pixel_values: torch.Tensor, geometry: Geometry | None = None) -> torch.Tensor:
        """``(B, 3, h, w) -> (B, V, 3, S, S)``: only the views the output depends on, in one tensor (see
        :class:`ViewPlan`); for the official model the 9 tiles and the centre strided view (V = 10). ``geometry``:
        the grid of these images (default: the model's fixed grid)."""
        if pixel_values.dim() != 4:
            raise ValueError(f"pixel_values must be (batch, channels, height, width), got {tuple(pixel_values.shape)}")
        geometry = self._geometry(geometry)
        big = self.high_res(pixel_values, geometry)
        grid, plan = geometry.grid, self.plan_for(geometry)
        parts = []
        if plan.local:
            parts.append(local_crops(big, grid))
        if plan.centre_only:
            parts.append(self.low_res(big, geometry).unsqueeze(1))  # the centre strided view
        elif plan.strided:
            parts.append(global_crops(big, grid))
        if plan.extra_low:
            parts.append(self.low_res(big, geometry).unsqueeze(1))
        return torch.cat(parts, dim=1)

    def canvases(
        self, pixel_values: torch.Tensor, image_grids: torch.Tensor | None = None
    ) -> list[tuple[Geometry, torch.Tensor, torch.Tensor]]:
        """The images of a batch grouped by grid: ``[(geometry, batch indices, canvases (n, 3, n_h S, n_w S)), ...]``
        in order of first appearance.

        A fixed grid: one group, ``pixel_values`` as given (``image_grids``, if passed, must all be that grid). Dynamic
        grids: ``pixel_values`` ``(B, K_max, 3, S, S)`` tiles with ``image_grids`` ``(B, 2)`` (each canvas is rebuilt
        from its first ``n_h n_w`` tiles), or ``(B, 3, n_h S, n_w S)`` canvases of one candidate grid (``image_grids``
        then optional)."""
        B = pixel_values.shape[0]
        if image_grids is not None:
            image_grids = torch.as_tensor(image_grids)
            if image_grids.shape != (B, 2):
                raise ValueError(
                    f"image_grids must be ({B}, 2), one (n_h, n_w) per image of pixel_values; got "
                    f"{tuple(image_grids.shape)}"
                )
            rows = [tuple(r) for r in image_grids.tolist()]
        if pixel_values.dim() == 4:
            if image_grids is None:
                geometry = self._canvas_geometry(pixel_values)
            else:
                geometry = self.geometry.for_grid(rows[0]) if rows else self._canvas_geometry(pixel_values)
                if any(r != geometry.grid for r in rows):
                    raise ValueError(
                        "(B, 3, H, W) pixel_values hold images of one grid; images of several grids need "
                        "(B, K_max, 3, S, S) tiles"
                    )
            return [(geometry, torch.arange(B), pixel_values)]
        if pixel_values.dim() != 5:
            raise ValueError(
                "pixel_values must be (B, 3, H, W) images or (B, K_max, 3, S, S) tiles, got "
                f"{tuple(pixel_values.shape)}"
            )
        if image_grids is None:
            raise ValueError("(B, K_max, 3, S, S) tile pixel_values need image_grids (B, 2) saying each image's grid")
        S = self.geometry.view_size
        if tuple(pixel_values.shape[2:]) != (3, S, S):
            raise ValueError(f"tiles must be (3, {S}, {S}) (the view size); got {tuple(pixel_values.shape[2:])}")
        groups = []
        for grid in dict.fromkeys(rows):
            geometry = self.geometry.for_grid(grid)
            K = geometry.num_crops
            if K > pixel_values.shape[1]:
                raise ValueError(
                    f"grid {grid[0]}x{grid[1]} needs {K} tiles but pixel_values holds {pixel_values.shape[1]} per image"
                )
            index = torch.tensor([b for b, r in enumerate(rows) if r == grid], device=pixel_values.device)
            groups.append((geometry, index, merge_local(pixel_values[index, :K], grid)))
        return groups

    def _canvas_geometry(self, pixel_values: torch.Tensor) -> Geometry:
        if not self.geometry.is_dynamic:
            return self.geometry
        S = self.geometry.view_size
        H, W = pixel_values.shape[-2:]
        if H % S or W % S:
            raise ValueError(
                f"a {H}x{W} image is not a whole grid of {S}-px views; pass the processor's tiles and image_grids"
            )
        return self.geometry.for_grid((H // S, W // S))

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

    def high_res_features(self, feats: torch.Tensor, geometry: Geometry | None = None) -> torch.Tensor | None:
        """``(B, V, T, D) -> (B, T, D)``: the high-resolution branch (DEM, or the ablation fusions), or None for the
        low-resolution-only variant."""
        geometry = self._geometry(geometry)
        K, plan, grid = geometry.num_crops, self.plan_for(geometry), geometry.grid
        if self.perspectives == "none":
            return None
        local = feats[:, :K] if plan.local else None
        start = K if plan.local else 0
        if self.dem is not None:
            dtype = self.dem.norm.weight.dtype
            if self.perspectives != "both":  # one perspective through the DEM: its features fill both inputs
                single = (local if plan.local else feats[:, start : start + K]).to(dtype)
                return self.dem(single, single, grid=grid)
            if plan.centre_only:
                return self.dem.forward_centre(local.to(dtype), feats[:, start].to(dtype), grid=grid)
            return self.dem(local.to(dtype), feats[:, start : start + K].to(dtype), grid=grid)
        strided = feats[:, start : start + K] if plan.strided else None
        B, _, T, D = feats.shape
        p = geometry.patches_per_side
        maps = []
        if local is not None:
            maps.append(merge_local(local.reshape(B, K, p, p, D), grid, channels_last=True))
        if strided is not None:
            maps.append(merge_global(strided.reshape(B, K, p, p, D), grid, channels_last=True))
        merged = maps[0] if len(maps) == 1 else maps[0] + maps[1]  # (B, n_h p, n_w p, D)
        pooled = F.avg_pool2d(merged.permute(0, 3, 1, 2), kernel_size=grid)  # (B, D, p, p)
        return pooled.permute(0, 2, 3, 1).reshape(B, T, D)

    def enhanced_features(self, pixel_values: torch.Tensor, image_grids: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, h, w)`` images, or ``(B, K_max, 3, S, S)`` tiles with ``image_grids`` (dynamic grids) ->
        ``(B, T, D)``: the high-resolution branch fused with the low-resolution view, before the projector."""
        if image_grids is None and not self.geometry.is_dynamic:
            return self._fused(self.view_features(self.views(pixel_values)), self.geometry)
        groups = self.canvases(pixel_values, image_grids)
        views = [self.views(big, geometry) for geometry, _, big in groups]
        counts = [v.shape[0] * v.shape[1] for v in views]
        flat = torch.cat([v.flatten(0, 1) for v in views])  # every view of every image: one tower call
        feats = self.view_features(flat.unsqueeze(0))[0].split(counts)
        out = None
        for (geometry, index, _), v, f in zip(groups, views, feats, strict=True):
            fused = self._fused(f.unflatten(0, v.shape[:2]), geometry)
            if out is None:
                out = fused.new_empty((pixel_values.shape[0], *fused.shape[1:]))
            out[index.to(out.device)] = fused
        return out

    def _fused(self, feats: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """``(B, V, T, D)`` view features of images of one grid -> ``(B, T, D)`` fused features."""
        enhanced = self.high_res_features(feats, geometry)
        low_index = self.plan_for(geometry).low_index
        low = feats[:, low_index] if low_index is not None else None
        if enhanced is None:
            return low
        if low is None:
            return enhanced
        low = low.to(enhanced.dtype)
        if self.low_res_fusion == "add":
            return low + enhanced
        # Official: stack and mean, which equals (f32(a) + f32(b)) / 2 rounded once to the feature dtype.
        return ((low.float() + enhanced.float()) / 2).to(enhanced.dtype)

    def forward(self, pixel_values: torch.Tensor, image_grids: torch.Tensor | None = None) -> torch.Tensor:
        fused = self.enhanced_features(pixel_values, image_grids)
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
