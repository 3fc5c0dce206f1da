"""Dynamic grids in geometry.py: the selection rule (exact grids, tie-breaks), the candidate set, the token count,
config validation and round trips."""

from fractions import Fraction

import pytest

from inf_llava import DynamicGeometry, Geometry, InfLlavaConfig, select_grid
from inf_llava.geometry import candidate_grids, geometry_from_dict, grid_fit
from inf_llava.presets import official_config

OFFICIAL_DYNAMIC = official_config(grid="dynamic").geometry  # CLIP-L/14-336 views, budget 9


def test_candidate_set_of_the_official_budget():
    grids = candidate_grids(9)
    assert grids == OFFICIAL_DYNAMIC.grids
    assert len(grids) == 23  # sum over n_h of floor(9 / n_h)
    assert grids[:7] == ((1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (2, 2))  # by (K, n_h)
    assert all(n_h * n_w <= 9 for n_h, n_w in grids) and (3, 3) in grids and (2, 5) not in grids
    assert OFFICIAL_DYNAMIC.max_crops == 9


@pytest.mark.parametrize(
    "height,width,grid",
    [
        (1080, 1920, (2, 4)),  # wide photo: 2x4 keeps 39% of its pixels (3x3: 28%)
        (1920, 1080, (4, 2)),  # tall: the transpose
        (1008, 1008, (3, 3)),  # square at the official size
        (672, 672, (2, 2)),  # square, held whole by 2x2: the smallest canvas that does
        (480, 640, (2, 2)),  # COCO photo
        (336, 1008, (1, 3)),  # exactly three views wide
        (3508, 2480, (3, 3)),  # A4 portrait at 300 dpi
        (10, 10, (1, 1)),  # tiny: one view holds it whole
        (10, 30, (1, 1)),
        (1, 1, (1, 1)),
        (20000, 20000, (3, 3)),  # huge square: the largest square grid within the budget
        (1000, 20000, (1, 9)),  # huge panorama: the widest grid
        (20000, 1000, (9, 1)),
    ],
)
def test_selected_grid(height, width, grid):
    assert OFFICIAL_DYNAMIC.select_grid(height, width) == grid
    assert OFFICIAL_DYNAMIC.for_image(height, width).grid == grid


def test_wide_photo_numbers():
    # The example: a 1080x1920 photo in the official 3x3 layout is 44% padding.
    fixed, dynamic = grid_fit(1080, 1920, (3, 3), 336), grid_fit(1080, 1920, (2, 4), 336)
    assert fixed.canvas_share == pytest.approx(0.5625) and dynamic.canvas_share == pytest.approx(8 / 9)
    assert fixed.scale == Fraction(1008, 1920) and dynamic.scale == Fraction(672, 1080)
    assert fixed.kept == Fraction(1008 * 1008 * 1080, 1920)  # s^2 * H * W with s = 1008 / 1920
    assert dynamic.kept_share > fixed.kept_share


@pytest.mark.parametrize(
    "size,grids,expected,why",
    [
        ((100, 100), [(2, 1), (1, 2)], (2, 1), "complete tie: the earlier candidate"),
        ((100, 100), [(1, 2), (2, 1)], (1, 2), "complete tie: the earlier candidate"),
        ((100, 100), [(1, 4), (2, 2), (4, 1)], (2, 2), "same kept and canvas: the smaller aspect error"),
        ((100, 100), [(2, 2), (1, 1)], (1, 1), "same kept pixels: the smaller canvas"),
        ((700, 700), [(1, 1), (3, 3)], (3, 3), "more kept pixels beats a smaller canvas"),
        ((672, 1344), [(3, 3), (2, 4)], (2, 4), "2x4 holds it whole, 3x3 shrinks it to 3/4"),
        ((300, 1000), [(1, 3), (2, 3)], (1, 3), "both keep 1008/1000 -> all; 1x3 has the smaller canvas"),
    ],
)
def test_tie_breaks(size, grids, expected, why):
    assert select_grid(*size, grids, 336) == expected, why


def test_rule_is_exact_rational_arithmetic():
    # 2x1 and 1x2 keep exactly the same pixels of a 3x3 image at S = 1 only if computed exactly (1/9 of 9 = 1).
    assert grid_fit(3, 3, (2, 1), 1).kept == grid_fit(3, 3, (1, 2), 1).kept == 1
    assert select_grid(3, 3, [(2, 1), (1, 2)], 1) == (2, 1)


def test_tokens_per_image_are_the_same_for_every_grid():
    geo = OFFICIAL_DYNAMIC
    assert geo.tokens_per_image == 576 == official_config().tokens_per_image
    for grid in geo.grids:
        g = geo.for_grid(grid)
        assert g.tokens_per_image == 576 and g.feature_map_size == (24 * grid[0], 24 * grid[1])
        assert g.high_res_size == (336 * grid[0], 336 * grid[1])


def test_fixed_geometry_has_the_same_interface():
    geo = official_config().geometry
    assert not geo.is_dynamic and geo.grids == ((3, 3),) and geo.max_crops == 9
    assert geo.for_image(1080, 1920) is geo  # a fixed grid pads every image to its layout
    assert geo.for_grid(3) is geo
    with pytest.raises(ValueError, match="grid 2x4 is not this model's 3x3 grid"):
        geo.for_grid((2, 4))


def test_dict_round_trip():
    for geo in (OFFICIAL_DYNAMIC, DynamicGeometry(((1, 3), (3, 1)), 24, 4), Geometry(2, 3, 24, 4)):
        assert geometry_from_dict(geo.to_dict()) == geo
    with pytest.raises(ValueError, match="grid 2x2 is not one of this model's candidate grids \\(1x3, 3x1\\)"):
        DynamicGeometry(((1, 3), (3, 1)), 24, 4).for_grid(2)


def test_config_round_trip_and_options(tmp_path):
    config = official_config(grid="dynamic", max_views=4, grid_candidates=[[1, 3], [3, 1], [1, 1]])
    assert config.is_dynamic and config.geometry.grids == ((1, 3), (3, 1), (1, 1))
    assert config.num_views == 2 * 3 + 1
    config.save_pretrained(tmp_path)
    loaded = InfLlavaConfig.from_pretrained(tmp_path)
    assert loaded.grid == "dynamic" and loaded.max_views == 4 and loaded.grid_candidates == [[1, 3], [3, 1], [1, 1]]
    assert loaded.geometry == config.geometry and loaded.to_dict() == config.to_dict()
    budget = official_config(grid="dynamic", max_views=2).geometry
    assert budget.grids == ((1, 1), (1, 2), (2, 1))
    with pytest.raises(ValueError, match="high-resolution size per image"):
        config.high_res_size  # noqa: B018


def test_official_config_is_unchanged_by_the_new_fields():
    config = official_config()
    assert config.grid == [3, 3] and not config.is_dynamic and config.grid_candidates is None
    assert config.geometry == Geometry(3, 3, 336, 14)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"grid": "dynamic", "grid_candidates": []}, "needs at least one candidate grid"),
        ({"grid": "dynamic", "max_views": 0}, "max_views must be a positive integer, got 0"),
        ({"grid": "dynamic", "grid_candidates": [[2, 5]]}, "candidate grid 2x5 has 10 sub-images .* over max_views=9"),
        ({"grid": "dynamic", "max_views": 4, "grid_candidates": [[3, 3]]}, "over max_views=4"),
        ({"grid": "dynamic", "grid_candidates": [[1, 1], [1, 1]]}, "candidate grids repeat 1x1"),
        ({"grid": "dynamic", "grid_candidates": [[0, 2]]}, "grid sizes must be >= 1"),
        ({"grid": "dyn"}, "grid must be an int, a pair \\(n_h, n_w\\) or 'dynamic', got 'dyn'"),
        ({"grid": 3, "grid_candidates": [[1, 1]]}, "grid_candidates applies only with grid='dynamic'"),
    ],
)
def test_bad_dynamic_configs_get_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message) as error:
        official_config(**settings)
    assert "\n" not in str(error.value)


def test_view_size_not_divisible_by_patch_size():
    from transformers import CLIPVisionConfig

    vision = CLIPVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, image_size=30, patch_size=4)
    with pytest.raises(ValueError, match="view size 30 is not a multiple of the patch size 4"):
        InfLlavaConfig(vision_config=vision, grid="dynamic")


def test_select_grid_rejects_bad_sizes():
    with pytest.raises(ValueError, match="image size must be positive integers, got 0x5"):
        select_grid(0, 5, [(1, 1)], 24)
    with pytest.raises(ValueError, match="no candidate grids"):
        select_grid(5, 5, [], 24)


def test_describe():
    assert official_config().geometry.describe() == "3x3 grid of 336-px views (1008x1008 input), 576 image tokens"
    assert OFFICIAL_DYNAMIC.describe() == (
        "dynamic grid (23 candidates, at most 9 sub-images) of 336-px views, 576 image tokens"
    )
