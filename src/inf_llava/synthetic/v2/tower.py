"""One vision tower per seed, pretrained on task v2's images and shared by every variant of the ablation.

The official model starts from a pretrained CLIP tower; none exists here, so the tower gets its own dense objective
first, independent of any DEM or fusion choice: for every patch of every view it will meet (the nine local tiles and
the nine strided views, the low-resolution view among them), linear heads on the patch token predict

- which glyph type (or none) has its centre pixel in the patch, on local tiles (native resolution; the strided
  views cannot show a glyph's type, so they get no glyph target), and
- which shape (colour + kind, or none) covers most of the patch's pixels, on both perspectives, and
- where the patch is in its view (row and column), on both perspectives, if ``positions``: a pretrained CLIP's patch
  features say where they are, and an LLM reading image tokens relies on it (their order in the prompt reaches it only
  through rotary offsets that move with the question's length). Trained without it the tower forgets its position
  embeddings: a linear probe reads the quadrant of a stage-1 image token at 0.46 (chance 0.25); with it, 0.94.

Variants then train their DEM + projector (stage 1) and DEM + projector + LLM (stage 2) on top of this frozen tower,
like the paper's two stages on top of CLIP.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...modeling.cropping import global_crops, local_crops
from ...modeling.vision_tower import patch_features
from ..encoder_pretraining import cosine_with_warmup, optimizer_step
from ..scenes import COLORS
from .task import GLYPH_CLASSES, GLYPH_SIDE, SHAPE_CLASSES

NONE_WEIGHT = 0.1  # most patches hold no glyph; down-weight that class in the glyph loss


def _shape_map(pixels: np.ndarray, scene: dict) -> np.ndarray:
    """``(H, W)`` shape class of every pixel (0: background or glyph)."""
    out = np.zeros(pixels.shape[:2], dtype=np.int64)
    half = pixels.shape[0] // 2
    for shape in scene["shapes"]:
        q = shape["quadrant"]
        top = 0 if q.startswith("top") else half
        left = 0 if q.endswith("left") else half
        block = (pixels[top : top + half, left : left + half] == COLORS[shape["color"]]).all(axis=-1)
        out[top : top + half, left : left + half][block] = SHAPE_CLASSES.index(f"{shape['color']} {shape['kind']}")
    return out


def _glyph_map(size: int, scene: dict, corners: dict) -> np.ndarray:
    """``(H, W)`` glyph class at every glyph's centre pixel, 0 elsewhere."""
    out = np.zeros((size, size), dtype=np.int64)
    for glyph in scene["glyphs"]:
        y, x = corners[glyph["quadrant"]]
        out[y + GLYPH_SIDE // 2, x + GLYPH_SIDE // 2] = GLYPH_CLASSES.index(glyph["type"])
    return out


def per_patch(maps: torch.Tensor, patch: int, reduce: str) -> torch.Tensor:
    """``(V, s, s)`` class maps -> ``(V, T)`` per-patch classes (``max``: any nonzero; ``mode``: the majority)."""
    V, s, _ = maps.shape
    p = s // patch
    blocks = maps.reshape(V, p, patch, p, patch).permute(0, 1, 3, 2, 4).reshape(V, p * p, patch * patch)
    if reduce == "max":
        return blocks.max(dim=-1).values
    return blocks.mode(dim=-1).values


def class_maps(pixels: np.ndarray, scene: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(H, W)`` shape-class and glyph-class maps of one image (see :func:`_shape_map`, :func:`_glyph_map`)."""
    from .task import layout, scene_from_record

    corners = layout(scene_from_record(scene))[1]
    return torch.from_numpy(_shape_map(pixels, scene)), torch.from_numpy(_glyph_map(pixels.shape[0], scene, corners))


def patch_targets(pixels: np.ndarray, scene: dict, grid: int, patch: int) -> dict[str, torch.Tensor]:
    """Per-patch targets of one image: ``tile_glyph``, ``tile_shape`` and ``strided_shape``, each ``(K, T)``."""
    shapes, glyphs = class_maps(pixels, scene)
    return {
        "tile_glyph": per_patch(local_crops(glyphs[None], grid)[:, 0], patch, "max"),
        "tile_shape": per_patch(local_crops(shapes[None], grid)[:, 0], patch, "mode"),
        "strided_shape": per_patch(global_crops(shapes[None], grid)[:, 0], patch, "mode"),
    }


class PatchHeads(nn.Module):
    def __init__(self, width: int, side: int):
        super().__init__()
        self.glyph = nn.Linear(width, len(GLYPH_CLASSES))
        self.shape = nn.Linear(width, len(SHAPE_CLASSES))
        self.row = nn.Linear(width, side)
        self.col = nn.Linear(width, side)


def _losses(tower, heads, canvases, targets, grid, tokens, weight, positions):
    """(glyph loss, shape loss + position loss if ``positions``, glyph logits) of a batch."""
    B = canvases.shape[0]
    views = torch.cat([local_crops(canvases, grid), global_crops(canvases, grid)], dim=1)  # (B, 2K, 3, S, S)
    K = views.shape[1] // 2
    feats = patch_features(tower, views.flatten(0, 1), tokens).unflatten(0, (B, 2 * K))
    local, strided = feats[:, :K], feats[:, K:]
    glyph_logits = heads.glyph(local).flatten(0, 2)
    glyph_loss = F.cross_entropy(glyph_logits, targets["tile_glyph"].flatten(), weight=weight)
    shape_loss = F.cross_entropy(heads.shape(local).flatten(0, 2), targets["tile_shape"].flatten())
    shape_loss = shape_loss + F.cross_entropy(heads.shape(strided).flatten(0, 2), targets["strided_shape"].flatten())
    if positions:
        side = heads.row.out_features
        index = torch.arange(tokens, device=feats.device).expand(B * 2 * K, tokens).flatten()
        flat = feats.flatten(0, 2)
        shape_loss = shape_loss + F.cross_entropy(heads.row(flat), index // side)
        shape_loss = shape_loss + F.cross_entropy(heads.col(flat), index % side)
    return glyph_loss, shape_loss, glyph_logits


def glyph_accuracy(glyph_logits: torch.Tensor, target: torch.Tensor) -> float:
    """Accuracy on the patches that hold a glyph's centre."""
    target = target.flatten()
    mask = target > 0
    return float((glyph_logits.argmax(-1)[mask] == target[mask]).float().mean()) if mask.any() else float("nan")


def pretrain_tower(
    tower: nn.Module,
    canvases: torch.Tensor,
    targets: dict[str, torch.Tensor],
    *,
    grid: int,
    tokens_per_view: int,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    held_out: tuple[torch.Tensor, dict[str, torch.Tensor]] | None = None,
    warmup_ratio: float = 0.05,
    log_every: int = 50,
    positions: bool = True,
) -> list[list[float]]:
    """Train ``tower`` in place on preprocessed ``canvases`` ``(N, 3, nS, nS)`` and their stacked
    :func:`patch_targets` (``positions``: the row/column targets too); returns ``[[step, loss, held-out glyph
    accuracy], ...]``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    width = tower.config.hidden_size
    heads = PatchHeads(width, math.isqrt(tokens_per_view))
    params = [p for p in tower.parameters() if p.requires_grad] + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps, warmup_ratio))
    weight = torch.ones(len(GLYPH_CLASSES))
    weight[0] = NONE_WEIGHT
    tower.train()
    curve, window = [], []
    for step in range(1, steps + 1):
        index = torch.randint(0, canvases.shape[0], (batch_size,), generator=generator)
        batch = {k: v[index] for k, v in targets.items()}
        glyph_loss, shape_loss, _ = _losses(
            tower, heads, canvases[index], batch, grid, tokens_per_view, weight, positions
        )
        window.append(optimizer_step(glyph_loss + shape_loss, optimizer, scheduler, params))
        if step % log_every == 0 or step == steps:
            accuracy = float("nan")
            if held_out is not None:
                with torch.no_grad():
                    _, _, logits = _losses(
                        tower, heads, held_out[0], held_out[1], grid, tokens_per_view, weight, positions
                    )
                accuracy = glyph_accuracy(logits, held_out[1]["tile_glyph"])
            curve.append([step, sum(window) / len(window), accuracy])
            window = []
    tower.eval()
    return curve
