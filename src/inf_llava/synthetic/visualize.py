"""A figure of what the model sees: an image, its DCM local tiles and global (strided) views, the low-resolution
view, and where the DEM's global-as-query attention looks inside one local tile.

Everything is computed by the model's own code (processor, the encoder's ``canvases`` / ``high_res`` / ``low_res``
steps, DCM's crops, the DEM's attention maps), so for a dynamic-grid model the figure shows the grid chosen for this
image (docs/dynamic-grids.md has examples)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..modeling.cropping import global_crops, local_crops


def _to_image(pixels: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised ``(3, h, w)`` -> displayable ``(h, w, 3)`` in [0, 1]."""
    array = pixels.float().cpu().numpy().transpose(1, 2, 0)
    return np.clip(array * np.asarray(std) + np.asarray(mean), 0, 1)


def _mosaic(views: torch.Tensor, grid: tuple[int, int], mean, std) -> np.ndarray:
    n_h, n_w = grid
    tiles = [_to_image(v, mean, std) for v in views]
    h, w = tiles[0].shape[:2]
    gap = max(2, h // 32)  # white lines between views, visible at any view size
    canvas = np.ones((n_h * h + (n_h - 1) * gap, n_w * w + (n_w - 1) * gap, 3))
    for k, tile in enumerate(tiles):
        i, j = divmod(k, n_w)
        canvas[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = tile
    return canvas


@dataclass
class Panels:
    """What :func:`figure` draws: named ``(h, w, 3)`` arrays in [0, 1], the grid used, and (optionally) the DEM
    attention of one local tile (``(p, p)`` heat map over ``attention_tile``)."""

    grid: tuple[int, int]
    images: list[tuple[str, np.ndarray]]
    attention: np.ndarray | None = None
    attention_window: int | None = None
    attention_tile: np.ndarray | None = None


def panels(model, processor, image: Image.Image, window: int | None = None, attention: bool = True) -> Panels:
    """The figure's panels for ``image``: the high-resolution canvas, the local tiles and strided views as mosaics,
    the low-resolution view, and (with a DEM and ``attention``) the global-as-query attention inside local tile
    ``window`` (default: the tile whose attention is the most concentrated)."""
    encoder = model.model.image_encoder
    inputs = processor.image_processor(image)
    pixels = inputs["pixel_values"].to(next(model.parameters()).dtype)
    [(geo, _, canvas)] = encoder.canvases(pixels, inputs.get("image_grids"))
    big = encoder.high_res(canvas, geo)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    tiles, strided = local_crops(big, geo.grid)[0], global_crops(big, geo.grid)[0]
    n_h, n_w = geo.grid
    chosen = f" (grid {n_h}x{n_w} chosen)" if encoder.is_dynamic else ""
    out = Panels(
        geo.grid,
        [
            (
                f"input {image.width}x{image.height}\n-> {big.shape[-1]}x{big.shape[-2]}{chosen}",
                _to_image(big[0], mean, std),
            ),
            (f"DCM local:\n{geo.num_crops} tiles", _mosaic(tiles, geo.grid, mean, std)),
            (f"DCM global:\n{geo.num_crops} strided views", _mosaic(strided, geo.grid, mean, std)),
            ("low-resolution\nview", _to_image(encoder.low_res(big, geo)[0], mean, std)),
        ],
    )
    if encoder.dem is not None and attention:
        with torch.inference_mode():
            views = torch.cat([local_crops(big, geo.grid), global_crops(big, geo.grid)], dim=1)
            feats = encoder.view_features(views)
            K = geo.num_crops
            maps = encoder.dem.attention_maps(feats[:, :K], feats[:, K : 2 * K], grid=geo.grid)
        weights = maps.global_query[0].mean(dim=(1, 2))  # (K, T): mean over heads and queries of each window
        if window is None:
            window = int(weights.max(dim=-1).values.argmax())
        p = geo.patches_per_side
        out.attention = weights[window].reshape(p, p).float().cpu().numpy()
        out.attention_window = window
        out.attention_tile = _to_image(tiles[window], mean, std)
    return out


def figure(
    model,
    processor,
    image: Image.Image,
    path: str | Path,
    window: int | None = None,
    title: str = "",
    attention: bool = True,
) -> Path:
    """Write the figure of :func:`panels` to ``path`` (PNG); ``attention=False`` leaves the attention panel out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = panels(model, processor, image, window, attention)
    items = [(name, array, None) for name, array in drawn.images]
    if drawn.attention is not None:
        name = f"DEM attention on local tile {drawn.attention_window}\n(global view as query)"
        items.append((name, drawn.attention_tile, drawn.attention))
    widths = [max(0.9, array.shape[1] / array.shape[0]) for _, array, _ in items]
    # One row; wide images (whose panels would be thin strips in one row) get two rows.
    rows = [items] if sum(widths) <= 5 else [items[:2], items[2:]]
    row_widths = [[max(0.9, a.shape[1] / a.shape[0]) for _, a, _ in row] for row in rows]
    width = max(sum(w) for w in row_widths)
    fig = plt.figure(figsize=(3.6 * width + 1, 4.3 * len(rows)), layout="constrained")
    for subfig, row, ratios in zip(np.atleast_1d(fig.subfigures(len(rows), 1)), rows, row_widths):
        axes = subfig.subplots(1, len(row), width_ratios=ratios, squeeze=False)[0]
        for ax, (name, array, heat) in zip(axes, row):
            ax.imshow(array, interpolation="nearest")
            if heat is not None:
                size = array.shape[0]
                extent = (-0.5, size - 0.5, size - 0.5, -0.5)
                ax.imshow(heat, cmap="magma", alpha=0.55, extent=extent, interpolation="bilinear")
            ax.set_title(name)
            ax.axis("off")
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
