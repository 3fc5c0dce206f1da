"""DCM, the dual-perspective cropping module (paper Sec. 4.2), as pure tensor functions, with exact inverses.

For an image (or feature map) of ``H x W`` and a grid ``(n_h, n_w)`` both perspectives give ``K = n_h * n_w``
sub-images of ``h x w = (H / n_h) x (W / n_w)``, numbered ``k = i * n_w + j`` (row-major):

- **local** (Eq. 13): sub-image ``(i, j)`` is the contiguous tile ``x[i*h:(i+1)*h, j*w:(j+1)*w]``;
- **global** (Eq. 17): sub-image ``(i, j)`` is the strided (polyphase) view ``x[i::n_h, j::n_w]`` of the whole image.

Layouts: ``channels_last=False`` works on ``(..., C, H, W)`` (pixels) and returns ``(..., K, C, h, w)``;
``channels_last=True`` works on ``(..., H, W, C)`` (feature maps) and returns ``(..., K, h, w, C)``. Leading dims
(batch, ...) pass through. ``merge_local`` / ``merge_global`` are the exact inverses, so they also recombine
sub-image *features* into the high-resolution feature map (Eq. 5-6). All four are reshapes and permutes: exact in
every dtype, differentiable, and free of Python loops.
"""

from __future__ import annotations

import torch

from ..geometry import normalize_grid


def local_crops(x: torch.Tensor, grid: int | tuple[int, int], *, channels_last: bool = False) -> torch.Tensor:
    """Contiguous tiles: ``(..., C, H, W) -> (..., K, C, H/n_h, W/n_w)`` in row-major tile order."""
    return _split(x, grid, channels_last=channels_last, strided=False)


def global_crops(x: torch.Tensor, grid: int | tuple[int, int], *, channels_last: bool = False) -> torch.Tensor:
    """Strided views: item ``i * n_w + j`` equals ``x[..., i::n_h, j::n_w]`` (channels-first)."""
    return _split(x, grid, channels_last=channels_last, strided=True)


def merge_local(views: torch.Tensor, grid: int | tuple[int, int], *, channels_last: bool = False) -> torch.Tensor:
    """Inverse of :func:`local_crops`: tiles back into their grid cells."""
    return _merge(views, grid, channels_last=channels_last, strided=False)


def merge_global(views: torch.Tensor, grid: int | tuple[int, int], *, channels_last: bool = False) -> torch.Tensor:
    """Inverse of :func:`global_crops`: strided views interleaved back to their phases."""
    return _merge(views, grid, channels_last=channels_last, strided=True)


# Axis bookkeeping. After viewing each spatial axis S (= H or W) as two axes, the "outer" one has n (grid) or s
# (sub-image) entries depending on the perspective: local tiles are (n, s) (tile index varies slowest), strided
# views are (s, n) (phase varies fastest). The split moves both grid axes in front of the per-view axes.
def _split(x: torch.Tensor, grid, *, channels_last: bool, strided: bool) -> torch.Tensor:
    n_h, n_w = normalize_grid(grid)
    lead, (H, W), C = _spatial(x, channels_last)
    if H % n_h or W % n_w:
        raise ValueError(f"a {H}x{W} map cannot be cut into a {n_h}x{n_w} grid of equal sub-images")
    h, w = H // n_h, W // n_w
    L = len(lead)
    # Axis positions of (grid_h, sub_h, grid_w, sub_w, channels) after the view below.
    if channels_last:
        shape = (n_h, h, n_w, w, C) if not strided else (h, n_h, w, n_w, C)
        gh, sh, gw, sw, c = (0, 1, 2, 3, 4) if not strided else (1, 0, 3, 2, 4)
        order = (gh, gw, sh, sw, c)  # -> (n_h, n_w, h, w, C)
        out_tail = (n_h * n_w, h, w, C)
    else:
        shape = (C, n_h, h, n_w, w) if not strided else (C, h, n_h, w, n_w)
        c, gh, sh, gw, sw = (0, 1, 2, 3, 4) if not strided else (0, 2, 1, 4, 3)
        order = (gh, gw, c, sh, sw)  # -> (n_h, n_w, C, h, w)
        out_tail = (n_h * n_w, C, h, w)
    y = x.reshape(*lead, *shape).permute(*range(L), *(L + a for a in order))
    return y.reshape(*lead, *out_tail)


def _merge(views: torch.Tensor, grid, *, channels_last: bool, strided: bool) -> torch.Tensor:
    n_h, n_w = normalize_grid(grid)
    K = n_h * n_w
    if channels_last:
        if views.dim() < 4 or views.shape[-4] != K:
            raise ValueError(
                f"expected (..., {K}, h, w, C) sub-images for a {n_h}x{n_w} grid, got {tuple(views.shape)}"
            )
        lead, (h, w, C) = views.shape[:-4], views.shape[-3:]
        y = views.reshape(*lead, n_h, n_w, h, w, C)  # (n_h, n_w, h, w, C)
        L = len(lead)
        # target (H, W, C) with H = (n_h, h) local or (h, n_h) strided
        order = (0, 2, 1, 3, 4) if not strided else (2, 0, 3, 1, 4)
        return y.permute(*range(L), *(L + a for a in order)).reshape(*lead, n_h * h, n_w * w, C)
    if views.dim() < 4 or views.shape[-4] != K:
        raise ValueError(f"expected (..., {K}, C, h, w) sub-images for a {n_h}x{n_w} grid, got {tuple(views.shape)}")
    lead, (C, h, w) = views.shape[:-4], views.shape[-3:]
    y = views.reshape(*lead, n_h, n_w, C, h, w)  # (n_h, n_w, C, h, w)
    L = len(lead)
    order = (2, 0, 3, 1, 4) if not strided else (2, 3, 0, 4, 1)
    return y.permute(*range(L), *(L + a for a in order)).reshape(*lead, C, n_h * h, n_w * w)


def _spatial(x: torch.Tensor, channels_last: bool):
    if x.dim() < 3:
        raise ValueError(f"expected at least (C, H, W) or (H, W, C) dims, got shape {tuple(x.shape)}")
    if channels_last:
        return x.shape[:-3], (x.shape[-3], x.shape[-2]), x.shape[-1]
    return x.shape[:-3], (x.shape[-2], x.shape[-1]), x.shape[-3]
