"""The batched image encoder against the straightforward official computation (tests/reference)."""

import copy

import pytest
import torch
from reference.official_dem import SpatialEmbed
from reference.official_encoder import official_encode_images
from transformers import AutoModel

from inf_llava import InfLlavaForConditionalGeneration
from inf_llava.conversion.keys import dem_key_to_official
from inf_llava.presets import tiny_config


def _reference_parts(model):
    """A full-depth tower sharing the model's weights, plus the reference DEM loaded with the model's DEM."""
    encoder = model.image_encoder
    full = AutoModel.from_config(copy.deepcopy(model.config.vision_config)).eval()
    missing, _ = full.load_state_dict(encoder.vision_tower.state_dict(), strict=False)
    assert all(".layers." in k for k in missing)  # only the unused top layers differ
    dim = model.config.vision_config.hidden_size
    ref_dem = SpatialEmbed(dim, model.config.dem_num_heads).eval()
    ref_dem.load_state_dict({dem_key_to_official(k): v for k, v in encoder.dem.state_dict().items()})
    return full, ref_dem


def _randomise(model):
    with torch.no_grad():
        for p in model.image_encoder.dem.parameters():
            p.normal_(0, 0.2)


@pytest.mark.parametrize("input_size", ["high_res", "base"])
def test_encoder_matches_official_computation(tiny_tokenizer, input_size):
    torch.manual_seed(0)
    model = InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer)).eval()
    _randomise(model)
    full, ref_dem = _reference_parts(model)
    geo = model.config.geometry
    size = geo.high_res_size if input_size == "high_res" else geo.base_size
    pixels = torch.randn(2, 3, *size)
    with torch.no_grad():
        ours = model.get_image_features(pixels)
        ref = official_encode_images(pixels, full, ref_dem, model.image_encoder.projector, n=3)
    assert ours.shape == (2, geo.tokens_per_image, model.config.text_config.hidden_size)
    assert ((ours - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_one_batched_tower_call_and_no_base_view_for_odd_grid(tiny_tokenizer):
    torch.manual_seed(0)
    model = InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer)).eval()
    batches = []
    hook = model.image_encoder.vision_tower.register_forward_pre_hook(
        lambda m, args, kwargs: batches.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    with torch.no_grad():
        model.get_image_features(torch.randn(3, 3, 72, 72))
    hook.remove()
    # 9 tiles + the centre strided view per image: the base view is strided view (1, 1), and the DEM's bilinear
    # pick never reads the other 8 strided views.
    assert batches == [3 * 10]


def test_base_view_is_the_centre_strided_view():
    import torch.nn.functional as F

    x = torch.randn(2, 3, 72, 72)
    low = F.interpolate(x, size=(24, 24), mode="bicubic", align_corners=False)
    assert torch.equal(low, x[:, :, 1::3, 1::3])
    up = F.interpolate(low, size=(72, 72), mode="bicubic", align_corners=False)
    assert torch.equal(up[:, :, 1::3, 1::3], low)  # inference path: exact on CPU


@pytest.mark.parametrize("grid", [(2, 2), (1, 3), (3, 1)])
@pytest.mark.parametrize("pooling", ["bilinear", "avg"])
def test_other_grids_and_pooling_encode(tiny_tokenizer, grid, pooling):
    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer, grid=list(grid), dem_pooling=pooling)
    model = InfLlavaForConditionalGeneration(config).eval()
    views = model.image_encoder.views(torch.randn(1, 3, *config.high_res_size))
    K = grid[0] * grid[1]
    if model.image_encoder.centre_only:
        assert views.shape[1] == K + 1
    else:
        assert views.shape[1] == 2 * K + (0 if config.geometry.centre_view_index is not None else 1)
    with torch.no_grad():
        feats = model.get_image_features(torch.randn(2, 3, *config.high_res_size))
    assert feats.shape == (2, config.tokens_per_image, config.text_config.hidden_size)
    assert torch.isfinite(feats).all()


def test_even_grid_matches_reference(tiny_tokenizer):
    # 2x2: the base view is a genuine bicubic downscale and is encoded as an extra view.
    torch.manual_seed(0)
    model = InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer, grid=2)).eval()
    _randomise(model)
    full, ref_dem = _reference_parts(model)
    pixels = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        ours = model.get_image_features(pixels)
        ref = official_encode_images(pixels, full, ref_dem, model.image_encoder.projector, n=2)
    assert ((ours - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_low_res_view_options(tiny_tokenizer):
    torch.manual_seed(0)
    base = InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer)).eval()
    pixels = torch.randn(1, 3, 72, 72)
    enc = base.image_encoder
    with torch.no_grad():
        feats = enc.view_features(enc.views(pixels))  # 9 tiles + centre strided view
        dem = enc.dem.forward_centre(feats[:, :9], feats[:, 9])
        assert torch.allclose(enc.enhanced_features(pixels), (dem + feats[:, 9]) / 2, atol=1e-6)
        for overrides, expected in (({"low_res_fusion": "add"}, dem + feats[:, 9]), ({"use_low_res_view": False}, dem)):
            variant = InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer, **overrides)).eval()
            variant.load_state_dict(base.state_dict())
            assert torch.allclose(variant.image_encoder.enhanced_features(pixels), expected, atol=1e-6)


@pytest.mark.parametrize(
    "perspectives,fusion,views",
    [("none", "dem", 1), ("local", "dem", 10), ("global", "dem", 9), ("both", "add", 18), ("both", "dem", 10)],
)
def test_ablation_variants(tiny_tokenizer, perspectives, fusion, views):
    import torch.nn.functional as F

    from inf_llava import global_crops, local_crops, merge_global, merge_local

    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer, perspectives=perspectives, perspective_fusion=fusion)
    model = InfLlavaForConditionalGeneration(config).eval()
    enc = model.image_encoder
    assert (enc.dem is not None) == (perspectives == "both" and fusion == "dem")
    pixels = torch.randn(2, 3, 72, 72)
    assert enc.views(pixels).shape[1] == views
    with torch.no_grad():
        out = enc.enhanced_features(pixels)
        # straightforward recomputation: every view separately
        tiles, strided = local_crops(pixels, 3), global_crops(pixels, 3)
        encode = lambda v: enc.view_features(v.unsqueeze(1))[:, 0]  # noqa: E731
        low = encode(pixels[:, :, 1::3, 1::3])
        local = torch.stack([encode(tiles[:, k]) for k in range(9)], 1).reshape(2, 9, 6, 6, 32)
        glob = torch.stack([encode(strided[:, k]) for k in range(9)], 1).reshape(2, 9, 6, 6, 32)
        pool = lambda m: F.avg_pool2d(m.permute(0, 3, 1, 2), 3).permute(0, 2, 3, 1).reshape(2, 36, 32)  # noqa: E731
        maps = {
            "local": merge_local(local, 3, channels_last=True),
            "global": merge_global(glob, 3, channels_last=True),
        }
        if perspectives == "none":
            expected = low
        elif fusion == "add":
            expected = (low + pool(maps["local"] + maps["global"])) / 2
        elif perspectives == "both":
            expected = (low + enc.dem(local.reshape(2, 9, 36, 32), glob.reshape(2, 9, 36, 32))) / 2
        else:
            expected = (low + pool(maps[perspectives])) / 2
    assert torch.allclose(out, expected, atol=1e-5)
    with torch.no_grad():
        assert model.get_image_features(pixels).shape == (2, 36, 64)


def test_vision_feature_norm_normalises_every_view_and_trains_with_the_connector(tiny_tokenizer, tmp_path):
    from inf_llava.modeling.vision_tower import patch_features
    from inf_llava.training.stages import apply_stage, get_stage

    torch.manual_seed(0)
    model = InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer, vision_feature_norm=True)).eval()
    enc = model.image_encoder
    views = torch.randn(2, 10, 3, 24, 24)
    with torch.no_grad():
        raw = patch_features(enc.vision_tower, views.flatten(0, 1), 36).unflatten(0, (2, 10))
        feats = enc.view_features(views)
    assert torch.allclose(feats, torch.nn.functional.layer_norm(raw, (32,)), atol=1e-5)
    assert torch.allclose(feats.mean(-1), torch.zeros(2, 10, 36), atol=1e-5)
    assert InfLlavaForConditionalGeneration(tiny_config(tiny_tokenizer)).image_encoder.feature_norm is None
    counts = apply_stage(model, get_stage("pretrain"))
    assert counts["projector"] == sum(p.numel() for p in enc.projector.parameters()) + 64
    assert enc.feature_norm.weight.requires_grad and not any(p.requires_grad for p in enc.vision_tower.parameters())
    model.save_pretrained(tmp_path)
    again = InfLlavaForConditionalGeneration.from_pretrained(tmp_path)
    assert again.config.vision_feature_norm and torch.equal(
        again.image_encoder.feature_norm.weight, enc.feature_norm.weight
    )


def test_frozen_tower_builds_no_graph(tiny_model):
    model = tiny_model.train()
    for p in model.image_encoder.vision_tower.parameters():
        p.requires_grad_(False)
    feats = model.image_encoder.view_features(torch.randn(1, 10, 3, 24, 24))
    assert not feats.requires_grad
    for p in model.image_encoder.vision_tower.parameters():
        p.requires_grad_(True)
    assert model.image_encoder.view_features(torch.randn(1, 10, 3, 24, 24)).requires_grad


@pytest.mark.slow
def test_torch_compile_keeps_outputs_and_names(tiny_model):
    pixels = torch.randn(2, 3, 72, 72)
    names = [n for n, _ in tiny_model.named_parameters()]
    with torch.no_grad():
        eager = tiny_model.get_image_features(pixels)
        tiny_model.model.image_encoder.compile()
        compiled = tiny_model.get_image_features(pixels)
    assert [n for n, _ in tiny_model.named_parameters()] == names
    assert torch.allclose(eager, compiled, atol=1e-5)


@pytest.mark.slow
def test_frozen_compile_matches_eager_and_uses_inductor_freezing(tiny_model, monkeypatch):
    from torch._inductor import compile_fx

    frozen_graphs = []
    original = compile_fx.fw_compiler_freezing
    monkeypatch.setattr(
        compile_fx, "fw_compiler_freezing", lambda *a, **k: frozen_graphs.append(1) or original(*a, **k)
    )
    encoder = copy.deepcopy(tiny_model.model.image_encoder).eval()
    pixels = torch.randn(2, 3, 72, 72)
    names = [n for n, _ in encoder.named_parameters()]
    torch._dynamo.reset()
    with torch.inference_mode():
        eager = encoder(pixels)
        encoder.compile(dynamic=False, freeze=True)
        compiled = encoder(pixels)
    torch._dynamo.reset()
    assert frozen_graphs  # the weights were frozen into the compiled graphs
    assert [n for n, _ in encoder.named_parameters()] == names
    assert torch.allclose(eager, compiled, atol=1e-5)
