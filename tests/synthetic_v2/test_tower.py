"""The shared tower's position objective (``tower.py``): with it the tower's patch features say where each patch is
(as a pretrained CLIP's do); without it they need not."""

from __future__ import annotations

import torch

from inf_llava.modeling.cropping import global_crops
from inf_llava.modeling.vision_tower import patch_features
from inf_llava.synthetic.v2.experiment import AblationRecipe, build_model
from inf_llava.synthetic.v2.tower import pretrain_tower

RECIPE = AblationRecipe(vision_width=32, vision_layers=2, vision_heads=2, lm_width=32, lm_layers=1, lm_heads=2)


def _row_probe_accuracy(positions: bool) -> float:
    """A least-squares probe of each patch's row from the trained tower's features on held-out canvases."""
    model, _ = build_model(RECIPE, "inf_llava", seed=0)
    tower = model.model.image_encoder.vision_tower
    tokens = model.config.geometry.tokens_per_view
    side = RECIPE.grid * RECIPE.view_size
    generator = torch.Generator().manual_seed(0)
    canvases = torch.randn(48, 3, side, side, generator=generator)
    views = RECIPE.grid**2
    targets = {  # content targets all "none": only the position targets can shape the features
        "tile_glyph": torch.zeros(48, views, tokens, dtype=torch.long),
        "tile_shape": torch.zeros(48, views, tokens, dtype=torch.long),
        "strided_shape": torch.zeros(48, views, tokens, dtype=torch.long),
    }
    curve = pretrain_tower(
        tower,
        canvases,
        targets,
        grid=RECIPE.grid,
        tokens_per_view=tokens,
        steps=40,
        batch_size=8,
        lr=5e-3,
        seed=0,
        positions=positions,
    )
    assert len(curve) == 1 and curve[0][0] == 40
    held_out = global_crops(torch.randn(16, 3, side, side, generator=generator), RECIPE.grid).flatten(0, 1)
    with torch.no_grad():
        feats = patch_features(tower, held_out, tokens)
    rows = torch.arange(tokens).expand(feats.shape[0], tokens) // int(tokens**0.5)
    x = torch.cat([feats.flatten(0, 1), torch.ones(feats.shape[0] * tokens, 1)], 1)
    y = torch.nn.functional.one_hot(rows.flatten()).float()
    half = x.shape[0] // 2
    w = torch.linalg.lstsq(x[:half], y[:half]).solution
    return float(((x[half:] @ w).argmax(1) == rows.flatten()[half:]).float().mean())


def test_the_position_objective_makes_patch_features_say_their_row():
    with_positions = _row_probe_accuracy(True)
    assert with_positions > 0.95, with_positions
    assert with_positions > _row_probe_accuracy(False)
