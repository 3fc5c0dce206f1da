"""DEM, the dual-perspective enhancement module (paper Sec. 4.3; class ``SpatialEmbed`` in the official code).

Shapes: ``B`` images, ``K = n_h * n_w`` sub-images per perspective, ``p`` patches per view side, ``T = p * p``
tokens per view, ``D`` vision width. Inputs are the tower features of the local tiles and of the strided views,
each ``(B, K, T, D)`` in row-major sub-image order; the output is ``(B, T, D)``.

The official computation (spec section 5.5), generalised to any width, heads and grid:

1. ``CM`` = local features tiled back into the ``(n_h p, n_w p)`` map; ``SM`` = strided features interleaved back.
2. Branch A ("global as query"): contiguous windows of ``SM`` attend to the matching local tile (``CM`` window).
   Outputs tiled back: ``S'`` (stride-mosaic layout).
3. Branch B ("local as query"): strided phases of ``CM`` attend to the matching strided view. Outputs interleaved
   back: ``C'`` (crop-mosaic layout). One attention module (shared weights) serves both branches.
4. ``fuse = LayerNorm(concat(ffn_local(C'), ffn_global(S')) + S' + C')``, each FFN ``D -> D/r -> D/2``.
   With one direction only (``directions="global"``: branch A, the paper's "DEM w/ global"; ``"local"``: branch B,
   "DEM w/ local"; Table 4), the other branch is not computed and the computed one's output stands in for it in
   this step (``C' := S'`` or ``S' := C'``): the same parameters and the same fusion, one attention direction less.
5. Back to ``(p, p)``: bilinear resize (official; for an odd grid an exact pick of the centre token of every
   ``n_h x n_w`` block) or average pooling.

All windows of a branch go through attention in one batched call. With bilinear pooling and an odd grid (``p``
divisible by ``n``), only the picked positions are computed: their branch-A queries are the centre strided view's
tokens and their branch-B queries are the centre phase of ``CM`` (spec section 6: only ``T`` of the ``K T`` fused
positions reach the output). That is the same function with about ``n_h * n_w`` times less attention work, and it
reads only the centre strided view: the other ``K - 1`` strided views never reach the output
(:meth:`DualPerspectiveEnhancement.forward_centre`). ``full=True`` runs the full-shape computation instead.

The module's parameters do not depend on the grid: every window and phase holds one view's ``T`` tokens whatever
``(n_h, n_w)`` is. So one module serves any grid: ``grid=`` on each call overrides the one it was built with (dynamic
grids, docs/dynamic-grids.md). For a non-square grid the map is ``(n_h p, n_w p)`` and step 5 resizes each axis by its
own factor: bilinear picks the centre row/column of each block along an odd factor and averages the two middle ones
along an even factor (``align_corners=False``); average pooling averages each ``n_h x n_w`` block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..geometry import normalize_grid
from .cropping import global_crops, local_crops, merge_global, merge_local


class WindowCrossAttention(nn.Module):
    """Multi-head cross-attention over independent windows, batched: ``(N, Lq, D) x (N, Lk, D) -> (N, Lq, D)``.

    Official op order (``eager``): ``softmax(Q K^T / sqrt(d_k)) V``, output projection, plus the *raw* query
    (before its projection), then LayerNorm. ``sdpa`` uses the fused kernel (same function, different rounding).
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-5, attn_implementation: str = "sdpa"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"{num_heads} heads do not divide width {dim}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_implementation = attn_implementation
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.o_proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(
        self, query: torch.Tensor, context: torch.Tensor, *, return_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        N, Lq, D = query.shape
        Lk = context.shape[1]
        H, Dh = self.num_heads, self.head_dim
        q = self.q_proj(query).view(N, Lq, H, Dh).transpose(1, 2)  # (N, H, Lq, Dh)
        k = self.k_proj(context).view(N, Lk, H, Dh).transpose(1, 2)  # (N, H, Lk, Dh)
        v = self.v_proj(context).view(N, Lk, H, Dh).transpose(1, 2)
        weights = None
        if return_weights or self.attn_implementation == "eager":
            # Division after the matmul by the Python float sqrt(d_k), softmax in the tensor dtype (official).
            weights = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(Dh), dim=-1)
            x = torch.matmul(weights, v)
        else:
            x = F.scaled_dot_product_attention(q, k, v)
        x = x.transpose(1, 2).reshape(N, Lq, D)
        out = self.norm(self.o_proj(x) + query)
        return out, (weights if return_weights else None)


def _ffn(dim: int, ratio: int) -> nn.Sequential:
    # Linear(D -> D/r), exact GELU, Linear(D/r -> D/2); indices 0 and 2 as in the official checkpoints.
    return nn.Sequential(nn.Linear(dim, dim // ratio), nn.GELU(), nn.Linear(dim // ratio, dim // 2))


DIRECTIONS = ("both", "global", "local")  # which enhancement directions run (paper Table 4)


@dataclass
class EnhancementAttentions:
    """Attention weights of a full-shape DEM pass, each ``(B, K, heads, T, T)``: query window/phase ``k`` of the
    global-as-query branch (A) and of the local-as-query branch (B); None for a direction the DEM does not run."""

    global_query: torch.Tensor | None
    local_query: torch.Tensor | None


class DualPerspectiveEnhancement(nn.Module):
    """The DEM: fuses local-tile and strided-view features into one base-grid feature map.

    Args:
        dim: vision width ``D`` (must be even).
        grid: ``n`` or ``(n_h, n_w)``: the default grid of calls that pass none (None: every call passes one).
        num_heads: attention heads (official: 8).
        ffn_ratio: branch FFN bottleneck ratio (official: 16).
        pooling: ``"bilinear"`` (official) or ``"avg"``.
        eps: LayerNorm epsilon.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (official op order).
        directions: ``"both"`` (official), or one enhancement direction only: ``"global"`` (global-perspective
            enhancement, global features query the local ones) or ``"local"`` (local features query the global ones).
    """

    def __init__(
        self,
        dim: int,
        grid: int | tuple[int, int] | None,
        num_heads: int = 8,
        ffn_ratio: int = 16,
        pooling: str = "bilinear",
        eps: float = 1e-5,
        attn_implementation: str = "sdpa",
        directions: str = "both",
    ):
        super().__init__()
        if directions not in DIRECTIONS:
            raise ValueError(f"directions must be one of {', '.join(map(repr, DIRECTIONS))}, got {directions!r}")
        if dim % 2:
            raise ValueError(f"DEM width must be even (each branch keeps half), got {dim}")
        if pooling not in ("bilinear", "avg"):
            raise ValueError(f"pooling must be 'bilinear' or 'avg', got {pooling!r}")
        self.grid = None if grid is None else normalize_grid(grid)
        self.pooling = pooling
        self.directions = directions
        self.attention = WindowCrossAttention(dim, num_heads, eps, attn_implementation)
        self.ffn_local = _ffn(dim, ffn_ratio)  # official `ffn_crop`, applied to C' (local-as-query outputs)
        self.ffn_global = _ffn(dim, ffn_ratio)  # official `ffn_stride`, applied to S' (global-as-query outputs)
        self.norm = nn.LayerNorm(dim, eps=eps)  # official `ln_fuse`
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """PyTorch default init, as the official module gets it; the four attention projections start identical
        because the official code deep-copies one freshly built Linear (spec section 5.2)."""
        proto = self.attention.q_proj
        proto.reset_parameters()
        for layer in (self.attention.k_proj, self.attention.v_proj, self.attention.o_proj):
            layer.weight.copy_(proto.weight)
            layer.bias.copy_(proto.bias)
        for module in (*self.ffn_local, *self.ffn_global, self.attention.norm, self.norm):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def _grid(self, grid: int | tuple[int, int] | None) -> tuple[int, int]:
        if grid is not None:
            return normalize_grid(grid)
        if self.grid is None:
            raise ValueError("this DEM was built without a grid; pass grid=(n_h, n_w)")
        return self.grid

    def centre_only_applies(self, patches_per_side: int, grid: int | tuple[int, int] | None = None) -> bool:
        """True when the output needs only the local tiles and the *centre* strided view: bilinear pooling of an odd
        grid is an exact pick of each block's centre token, and ``p`` divisible by ``n`` keeps the picked queries
        in whole windows (spec section 6)."""
        n_h, n_w = self._grid(grid)
        return (
            self.pooling == "bilinear"
            and n_h % 2 == 1
            and n_w % 2 == 1
            and patches_per_side % n_h == 0
            and patches_per_side % n_w == 0
        )

    @property
    def centre_index(self) -> int:
        """Index ``c_h * n_w + c_w`` of the centre strided view (of the default grid)."""
        return self.centre_index_for(self.grid)

    def centre_index_for(self, grid: int | tuple[int, int] | None = None) -> int:
        """Index ``c_h * n_w + c_w`` of the centre strided view of ``grid``."""
        n_h, n_w = self._grid(grid)
        return (n_h - 1) // 2 * n_w + (n_w - 1) // 2

    def forward(
        self,
        local_feats: torch.Tensor,
        global_feats: torch.Tensor,
        *,
        full: bool = False,
        grid: int | tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """``(B, K, T, D), (B, K, T, D) -> (B, T, D)``; ``grid`` overrides the module's grid for this call."""
        grid = self._grid(grid)
        B, K, T, D, p = self._check(local_feats, global_feats, grid)
        if not full and self.centre_only_applies(p, grid):
            return self.forward_centre(local_feats, global_feats[:, self.centre_index_for(grid)], grid=grid)
        fuse, _ = self._full_map(local_feats, global_feats, p, return_weights=False, grid=grid)
        return self._pool(fuse, p, grid).reshape(B, T, D)

    def forward_centre(
        self, local_feats: torch.Tensor, centre_feats: torch.Tensor, *, grid: int | tuple[int, int] | None = None
    ) -> torch.Tensor:
        """The same output from the local tiles and the centre strided view alone: ``(B, K, T, D), (B, T, D) ->
        (B, T, D)``. The other strided views never reach the output, so they need not be encoded at all. Only valid
        when :meth:`centre_only_applies`."""
        grid = self._grid(grid)
        B, K, T, D = local_feats.shape
        p = math.isqrt(T)
        if centre_feats.shape != (B, T, D) or not self.centre_only_applies(p, grid) or K != grid[0] * grid[1]:
            raise ValueError(
                f"centre-only DEM needs (B, K, T, D) local and (B, T, D) centre features with an odd grid, bilinear "
                f"pooling and p divisible by n; got {tuple(local_feats.shape)}, {tuple(centre_feats.shape)}"
            )
        return self._centre_only(local_feats, centre_feats.view(B, p, p, D), p, grid).reshape(B, T, D)

    def attention_maps(
        self, local_feats: torch.Tensor, global_feats: torch.Tensor, *, grid: int | tuple[int, int] | None = None
    ) -> EnhancementAttentions:
        """Full-shape pass returning the attention weights of both branches (for inspection and plots)."""
        grid = self._grid(grid)
        B, K, T, D, p = self._check(local_feats, global_feats, grid)
        _, (wa, wb) = self._full_map(local_feats, global_feats, p, return_weights=True, grid=grid)
        heads = self.attention.num_heads
        shape = (B, K, heads, T, T)
        return EnhancementAttentions(
            global_query=None if wa is None else wa.view(shape), local_query=None if wb is None else wb.view(shape)
        )

    # ---- internals ---------------------------------------------------------------------------------------------
    def _check(self, local_feats: torch.Tensor, global_feats: torch.Tensor, grid: tuple[int, int]):
        if local_feats.shape != global_feats.shape or local_feats.dim() != 4:
            raise ValueError(
                "DEM expects local and global features of the same (B, K, T, D) shape, got "
                f"{tuple(local_feats.shape)} and {tuple(global_feats.shape)}"
            )
        B, K, T, D = local_feats.shape
        n_h, n_w = grid
        if K != n_h * n_w:
            raise ValueError(f"DEM built for a {n_h}x{n_w} grid expects {n_h * n_w} sub-images, got {K}")
        p = math.isqrt(T)
        if p * p != T:
            raise ValueError(f"DEM expects a square token grid per view, got {T} tokens")
        return B, K, T, D, p

    @property
    def runs_global(self) -> bool:
        """Branch A (global as query) runs."""
        return self.directions in ("both", "global")

    @property
    def runs_local(self) -> bool:
        """Branch B (local as query) runs."""
        return self.directions in ("both", "local")

    def _fuse(self, c_prime: torch.Tensor | None, s_prime: torch.Tensor | None) -> torch.Tensor:
        # One direction only: its output stands in for the missing one.
        c_prime = s_prime if c_prime is None else c_prime
        s_prime = c_prime if s_prime is None else s_prime
        # (concat + S') + C', left to right, as the official code adds them.
        cat = torch.cat([self.ffn_local(c_prime), self.ffn_global(s_prime)], dim=-1)
        return self.norm(cat + s_prime + c_prime)

    def _full_map(self, local_feats, global_feats, p: int, return_weights: bool, grid=None):
        B, K, T, D = local_feats.shape
        grid = self._grid(grid)
        local_map = merge_local(local_feats.view(B, K, p, p, D), grid, channels_last=True)  # CM (B, n_h p, n_w p, D)
        global_map = merge_global(global_feats.view(B, K, p, p, D), grid, channels_last=True)  # SM
        s_prime = c_prime = w_a = w_b = None
        if self.runs_global:
            # Branch A: contiguous windows of SM query the local tile in the same window (= CM window k).
            q_a = local_crops(global_map, grid, channels_last=True).reshape(B * K, T, D)
            out_a, w_a = self.attention(q_a, local_feats.reshape(B * K, T, D), return_weights=return_weights)
            s_prime = merge_local(out_a.view(B, K, p, p, D), grid, channels_last=True)
        if self.runs_local:
            # Branch B: strided phases of CM query the strided view of the same phase (= SM phase k).
            q_b = global_crops(local_map, grid, channels_last=True).reshape(B * K, T, D)
            out_b, w_b = self.attention(q_b, global_feats.reshape(B * K, T, D), return_weights=return_weights)
            c_prime = merge_global(out_b.view(B, K, p, p, D), grid, channels_last=True)
        return self._fuse(c_prime, s_prime), (w_a, w_b)  # (B, n_h p, n_w p, D)

    def _pool(self, fuse: torch.Tensor, p: int, grid: tuple[int, int]) -> torch.Tensor:
        x = fuse.permute(0, 3, 1, 2)  # (B, D, n_h p, n_w p)
        if self.pooling == "bilinear":
            # Official: fp32 bilinear resize (align_corners=False, no antialias), cast back.
            x = F.interpolate(x.float(), size=(p, p), mode="bilinear", align_corners=False).to(fuse.dtype)
        else:
            x = F.avg_pool2d(x, kernel_size=grid)
        return x.permute(0, 2, 3, 1)  # (B, p, p, D)

    def _centre_only(self, local_feats: torch.Tensor, centre: torch.Tensor, p: int, grid) -> torch.Tensor:
        B, K, T, D = local_feats.shape
        n_h, n_w = grid
        c_h, c_w = (n_h - 1) // 2, (n_w - 1) // 2
        m_h, m_w = p // n_h, p // n_w
        local_views = local_feats.view(B, K, p, p, D)  # centre: (B, p, p, D), the strided view at the centre phase
        s_prime = c_prime = None
        if self.runs_global:
            # S' at the picked positions: centre-view tokens, grouped by the window they fall in, query that window's
            # local tile.
            q_a = local_crops(centre, grid, channels_last=True).reshape(B * K, m_h * m_w, D)
            out_a, _ = self.attention(q_a, local_feats.reshape(B * K, T, D))
            s_prime = merge_local(out_a.view(B, K, m_h, m_w, D), grid, channels_last=True)  # (B, p, p, D)
        if self.runs_local:
            # C' at the picked positions: the centre phase of CM (every tile's tokens at offsets c, c+n, ...) queries
            # the centre strided view.
            q_b = merge_local(local_views[:, :, c_h::n_h, c_w::n_w], grid, channels_last=True).reshape(B, T, D)
            out_b, _ = self.attention(q_b, centre.reshape(B, T, D))
            c_prime = out_b.view(B, p, p, D)
        return self._fuse(c_prime, s_prime)  # (B, p, p, D)
