"""The crop figure (synthetic/visualize.py): its panels for fixed and dynamic grids, and the PNG."""

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

from inf_llava.presets import build_tiny
from inf_llava.synthetic.visualize import figure, panels


@pytest.mark.parametrize("size,grid", [((144, 72), (2, 4)), ((72, 144), (4, 2)), ((72, 72), (3, 3))])
def test_dynamic_panels_follow_the_grid_chosen_for_the_image(size, grid):
    model, processor = build_tiny(seed=0, grid="dynamic")
    drawn = panels(model.eval(), processor, random_image(0, size))
    n_h, n_w = grid
    assert drawn.grid == grid
    shapes = [array.shape for _, array in drawn.images]
    gap = 2
    mosaic = (n_h * 24 + (n_h - 1) * gap, n_w * 24 + (n_w - 1) * gap, 3)  # 2-px white lines
    assert shapes == [(24 * n_h, 24 * n_w, 3), mosaic, mosaic, (24, 24, 3)]
    assert f"(grid {n_h}x{n_w} chosen)" in drawn.images[0][0] and f"{n_h * n_w} tiles" in drawn.images[1][0]
    assert drawn.attention.shape == (6, 6) and 0 <= drawn.attention_window < n_h * n_w
    assert all(0 <= a.min() and a.max() <= 1 for _, a in drawn.images)


def test_fixed_panels_and_png(tmp_path):
    model, processor = build_tiny(seed=0)
    drawn = panels(model.eval(), processor, random_image(0, (144, 72)), attention=False)
    assert drawn.grid == (3, 3) and drawn.attention is None
    assert drawn.images[0][1].shape == (72, 72, 3) and "chosen" not in drawn.images[0][0]
    wide = figure(*build_tiny(seed=0, grid="dynamic"), random_image(0, (144, 72)), tmp_path / "wide.png")
    tall = figure(*build_tiny(seed=0, grid="dynamic"), random_image(0, (72, 144)), tmp_path / "tall.png")
    with Image.open(wide) as a, Image.open(tall) as b:
        assert a.format == b.format == "PNG"
        assert a.size[1] > b.size[1]  # the wide image's panels are laid out in two rows
        assert np.asarray(a.convert("L")).std() > 10  # not blank
