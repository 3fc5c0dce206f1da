"""The paper's ablation rows as configs: each builds, runs, and differs from INF-LLaVA only where it should."""

import pytest
import torch
import torch.nn.functional as F

from inf_llava import InfLlavaConfig, InfLlavaForConditionalGeneration
from inf_llava.modeling.cropping import global_crops, local_crops, merge_global, merge_local
from inf_llava.presets import tiny_config
from inf_llava.synthetic.v2.variants import OFFICIAL_VS_PAPER, TABLE4, TABLE6, VARIANTS, variant_overrides

B, K, P, D = 2, 9, 6, 32  # tiny preset: 3x3 grid, 24-px views of 4-px patches, width 32


def _build(tokenizer, name, seed=0):
    torch.manual_seed(seed)
    return InfLlavaForConditionalGeneration(tiny_config(tokenizer, **variant_overrides(name))).eval()


@pytest.fixture(scope="module")
def official(tiny_tokenizer):
    return _build(tiny_tokenizer, "inf_llava")


def test_every_paper_row_has_a_variant():
    assert set(TABLE6) | set(TABLE4) | set(OFFICIAL_VS_PAPER) | {"low_res"} == set(VARIANTS)
    assert variant_overrides("inf_llava") == {}
    with pytest.raises(ValueError, match="unknown variant 'dcm_both'"):
        variant_overrides("dcm_both")


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_builds_runs_and_differs_only_in_its_overrides(tiny_tokenizer, official, name, tmp_path):
    model = _build(tiny_tokenizer, name)
    base, config = official.config.to_dict(), model.config.to_dict()
    changed = {k for k in set(base) | set(config) if base.get(k) != config.get(k)}
    assert changed == set(variant_overrides(name))
    model.config.save_pretrained(tmp_path)  # the variant is saved with the weights and comes back the same
    assert InfLlavaConfig.from_pretrained(tmp_path).to_dict() == config
    # same parameters as INF-LLaVA, minus the DEM where there is none
    dem_keys = {k for k in official.state_dict() if ".dem." in k}
    expected = set(official.state_dict()) - (set() if model.config.uses_dem else dem_keys)
    assert set(model.state_dict()) == expected
    pixels = torch.randn(B, 3, 72, 72)
    with torch.no_grad():
        features = model.get_image_features(pixels)
        ids = torch.tensor([[model.config.image_token_id] * P * P + [5, 6]] * B)
        logits = model(input_ids=ids, pixel_values=pixels).logits
    assert features.shape == (B, P * P, 64) and torch.isfinite(features).all()
    assert logits.shape[:2] == (B, P * P + 2) and torch.isfinite(logits).all()


def _with_official_weights(tokenizer, official, name):
    model = _build(tokenizer, name, seed=1)
    missing, unexpected = model.load_state_dict(official.state_dict(), strict=False)
    assert not missing and all(".dem." in k for k in unexpected)
    return model


def _views(enc, pixels):
    encode = lambda v: enc.view_features(v.unsqueeze(1))[:, 0]  # noqa: E731 - one view at a time
    tiles, strided = local_crops(pixels, 3), global_crops(pixels, 3)
    local = torch.stack([encode(tiles[:, k]) for k in range(K)], 1)
    glob = torch.stack([encode(strided[:, k]) for k in range(K)], 1)
    return local, glob, encode(pixels[:, :, 1::3, 1::3])


def _dem_by_hand(dem, local, glob, directions, pooling="bilinear"):
    """The DEM recomputed from its parts at full shape, one direction's output standing in for the missing one."""
    cm = merge_local(local.view(B, K, P, P, D), 3, channels_last=True)
    sm = merge_global(glob.view(B, K, P, P, D), 3, channels_last=True)
    s_prime = c_prime = None
    if directions in ("both", "global"):
        out, _ = dem.attention(local_crops(sm, 3, channels_last=True).reshape(B * K, P * P, D), local.flatten(0, 1))
        s_prime = merge_local(out.view(B, K, P, P, D), 3, channels_last=True)
    if directions in ("both", "local"):
        out, _ = dem.attention(global_crops(cm, 3, channels_last=True).reshape(B * K, P * P, D), glob.flatten(0, 1))
        c_prime = merge_global(out.view(B, K, P, P, D), 3, channels_last=True)
    s_prime = c_prime if s_prime is None else s_prime
    c_prime = s_prime if c_prime is None else c_prime
    fuse = dem.norm(torch.cat([dem.ffn_local(c_prime), dem.ffn_global(s_prime)], -1) + s_prime + c_prime)
    x = fuse.permute(0, 3, 1, 2)
    x = (
        F.interpolate(x, size=(P, P), mode="bilinear", align_corners=False)
        if pooling == "bilinear"
        else F.avg_pool2d(x, 3)
    )
    return x.permute(0, 2, 3, 1).reshape(B, P * P, D)


@pytest.mark.parametrize(
    "name,views",
    [
        ("inf_llava", 10),
        ("dem_global", 10),
        ("dem_local", 10),
        ("dcm_local", 10),
        ("dcm_global", 9),
        ("dcm_add", 18),
        ("dem_avg_pool", 18),
        ("low_res_add", 10),
        ("paper_wording", 18),
        ("low_res", 1),
    ],
)
def test_variant_computes_its_row_with_inf_llavas_weights(tiny_tokenizer, official, name, views):
    model = _with_official_weights(tiny_tokenizer, official, name)
    enc, cfg = model.image_encoder, model.config
    torch.manual_seed(2)
    pixels = torch.randn(B, 3, 72, 72)
    assert enc.views(pixels).shape[1] == views  # only what reaches the output is encoded
    with torch.no_grad():
        out = enc.enhanced_features(pixels)
        local, glob, low = _views(enc, pixels)
        if cfg.perspectives == "none":
            high = None
        elif not cfg.uses_dem:
            pooled = F.avg_pool2d(
                (
                    merge_local(local.view(B, K, P, P, D), 3, channels_last=True)
                    + merge_global(glob.view(B, K, P, P, D), 3, channels_last=True)
                ).permute(0, 3, 1, 2),
                3,
            )
            high = pooled.permute(0, 2, 3, 1).reshape(B, P * P, D)
        else:
            a, b = {"both": (local, glob), "local": (local, local), "global": (glob, glob)}[cfg.perspectives]
            high = _dem_by_hand(enc.dem, a, b, cfg.dem_directions, cfg.dem_pooling)
        expected = low if high is None else (low + high if cfg.low_res_fusion == "add" else (low + high) / 2)
    assert torch.allclose(out, expected, atol=1e-5), (out - expected).abs().max()


@pytest.mark.parametrize("directions", ["global", "local"])
def test_one_direction_differs_from_both_and_its_centre_path_is_the_full_one(tiny_tokenizer, official, directions):
    model = _with_official_weights(tiny_tokenizer, official, f"dem_{directions}")
    torch.manual_seed(3)
    local, glob = torch.randn(B, K, P * P, D), torch.randn(B, K, P * P, D)
    with torch.no_grad():
        single = model.image_encoder.dem(local, glob)
        assert torch.allclose(single, model.image_encoder.dem(local, glob, full=True), atol=1e-5)
        both = official.image_encoder.dem(local, glob)
        maps = model.image_encoder.dem.attention_maps(local, glob)
    assert not torch.allclose(single, both, atol=1e-3)
    assert (maps.global_query is None) == (directions == "local") and (maps.local_query is None) == (
        directions == "global"
    )


def test_bad_variant_settings_are_named(tiny_tokenizer):
    with pytest.raises(ValueError, match="dem_directions must be one of"):
        tiny_config(tiny_tokenizer, dem_directions="sideways")
    with pytest.raises(ValueError, match="dem_directions='local' needs a DEM"):
        tiny_config(tiny_tokenizer, dem_directions="local", perspective_fusion="add")
    with pytest.raises(ValueError, match="single_perspective_dem applies only"):
        tiny_config(tiny_tokenizer, single_perspective_dem=True)
