"""A figure of what the model sees: an image, its DCM local tiles and global (strided) views, the low-resolution
view, and where the DEM's global-as-query attention looks inside one local tile.

Everything is computed by the model's own code (processor, the encoder's ``canvases`` / ``high_res`` / ``low_res``
steps, DCM's crops, the DEM's attention maps), so for a dynamic-grid model the figure shows the grid chosen for this
image (docs/dynamic-grids.md has examples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..modeling.cropping import global_crops, local_crops


def _to_image(pixels: torch.Tensor, mean, std) -> np.ndarray:
    """Normalised ``(3, h, w)`` -> displayable ``(h, w, 3)`` in [0, 1]."""
    array = pixels.float().cpu().numpy().transpose(1, 2, 0)
    return np.clip(array * np.asarray(std) + np.asarray(mean), 0, 1)


def _mosaic(views: torch.Tensor, grid: tuple[int, int], mean, std, gap: int = 2) -> np.ndarray:
    n_h, n_w = grid
    tiles = [_to_image(v, mean, std) for v in views]
    h, w = tiles[0].shape[:2]
    canvas = np.ones((n_h * h + (n_h - 1) * gap, n_w * w + (n_w - 1) * gap, 3))
    for k, tile in enumerate(tiles):
        i, j = divmod(k, n_w)
        canvas[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = tile
    return canvas


def figure(
    model,
    processor,
    image: Image.Image,
    path: str | Path,
    window: int | None = None,
    title: str = "",
    attention: bool = True,
) -> Path:
    """Write the figure to ``path`` (PNG). ``window`` selects the local tile for the attention panel (default: the
    tile whose DEM attention is the most concentrated); ``attention=False`` leaves that panel out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    encoder = model.model.image_encoder
    inputs = processor.image_processor(image)
    pixels = inputs["pixel_values"].to(next(model.parameters()).dtype)
    [(geo, _, canvas)] = encoder.canvases(pixels, inputs.get("image_grids"))
    big = encoder.high_res(canvas, geo)
    mean, std = processor.image_processor.image_mean, processor.image_processor.image_std
    tiles, strided = local_crops(big, geo.grid)[0], global_crops(big, geo.grid)[0]
    n_h, n_w = geo.grid
    chosen = f", grid {n_h}x{n_w} chosen" if encoder.is_dynamic else ""
    panels = [
        (f"input {image.width}x{image.height} -> {big.shape[-1]}x{big.shape[-2]}{chosen}", _to_image(big[0], mean, std)),
        (f"DCM local: {geo.num_crops} tiles", _mosaic(tiles, geo.grid, mean, std)),
        (f"DCM global: {geo.num_crops} strided views", _mosaic(strided, geo.grid, mean, std)),
        ("low-resolution view", _to_image(encoder.low_res(big, geo)[0], mean, std)),
    ]
    heat = None
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
        heat = weights[window].reshape(p, p).float().cpu().numpy()
    widths = [array.shape[1] / array.shape[0] for _, array in panels] + ([1.0] if heat is not None else [])
    fig, axes = plt.subplots(
        1, len(widths), figsize=(4 * sum(widths) + 1, 4.3), gridspec_kw={"width_ratios": widths}, squeeze=False
    )
    axes = axes[0]
    for ax, (name, array) in zip(axes, panels):
        ax.imshow(array, interpolation="nearest")
        ax.set_title(name)
        ax.axis("off")
    if heat is not None:
        ax = axes[-1]
        tile = _to_image(tiles[window], mean, std)
        ax.imshow(tile, interpolation="nearest")
        size = tile.shape[0]
        ax.imshow(heat, cmap="magma", alpha=0.55, extent=(-0.5, size - 0.5, size - 0.5, -0.5), interpolation="bilinear")
        ax.set_title(f"DEM attention on local tile {window}\n(global view as query)")
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
