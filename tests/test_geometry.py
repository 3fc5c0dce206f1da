import pytest

from inf_llava import Geometry, InfLlavaConfig
from inf_llava.geometry import normalize_grid
from inf_llava.presets import official_config


def test_official_geometry_numbers():
    config = official_config()
    geo = config.geometry
    assert geo.grid == (3, 3)
    assert geo.view_size == 336 and geo.patch_size == 14
    assert geo.patches_per_side == 24
    assert config.tokens_per_image == 576
    assert config.high_res_size == (1008, 1008)
    assert geo.feature_map_size == (72, 72)
    assert config.num_views == 19
    assert geo.centre_phase == (1, 1) and geo.centre_view_index == 4
    assert config.num_tower_layers == 23


@pytest.mark.parametrize(
    "grid,centre", [((3, 3), (1, 1)), ((5, 3), (2, 1)), ((1, 1), (0, 0)), ((2, 2), None), ((3, 2), None)]
)
def test_centre_phase(grid, centre):
    assert Geometry(grid[0], grid[1], 24, 4).centre_phase == centre


def test_rectangular_grid():
    geo = Geometry(2, 3, 336, 14)
    assert geo.high_res_size == (672, 1008)
    assert geo.num_crops == 6
    assert geo.tokens_per_image == 576


@pytest.mark.parametrize("bad", [0, -1, (3,), (3, 0), "3", 2.5, True, (3, 3, 3)])
def test_bad_grid(bad):
    with pytest.raises(ValueError, match="grid"):
        normalize_grid(bad)


def test_view_not_multiple_of_patch():
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        Geometry(3, 3, 30, 4)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="dem_num_heads=7 does not divide"):
        InfLlavaConfig(dem_num_heads=7)
    with pytest.raises(ValueError, match="projector_type"):
        InfLlavaConfig(projector_type="resampler")
    with pytest.raises(ValueError, match="vision_feature_layer=-30"):
        InfLlavaConfig(vision_feature_layer=-30)
    with pytest.raises(ValueError, match="dem_pooling"):
        InfLlavaConfig(dem_pooling="max")
    with pytest.raises(ValueError, match="image_token_id=99999999 is outside"):
        InfLlavaConfig(image_token_id=99999999)
    with pytest.raises(ValueError, match="grid"):
        InfLlavaConfig(grid=[3, 0])
    with pytest.raises(ValueError, match="perspectives must be one of"):
        InfLlavaConfig(perspectives="diagonal")
    with pytest.raises(ValueError, match="use_low_res_view must be True"):
        InfLlavaConfig(perspectives="none", use_low_res_view=False)


def test_config_round_trip(tmp_path):
    config = official_config(grid=[2, 3], dem_pooling="avg", low_res_fusion="add")
    config.save_pretrained(tmp_path)
    loaded = InfLlavaConfig.from_pretrained(tmp_path)
    assert loaded.grid == [2, 3]
    assert loaded.high_res_size == (672, 1008)
    assert loaded.dem_pooling == "avg" and loaded.low_res_fusion == "add"
    assert loaded.to_dict() == config.to_dict()


def test_official_geometry_constant_is_the_official_configs_and_the_processor_default():
    from inf_llava.configuration import OFFICIAL_GEOMETRY
    from inf_llava.processing.image_processing import InfLlavaImageProcessor

    assert OFFICIAL_GEOMETRY == official_config().geometry == InfLlavaConfig().geometry
    size = InfLlavaImageProcessor().size
    assert (size["height"], size["width"]) == OFFICIAL_GEOMETRY.high_res_size == (1008, 1008)
