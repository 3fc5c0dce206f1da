"""Dynamic grids in the model: the DEM on non-square grids against a from-spec reference, the encoder per grid
against the official computation generalised to ``n_h x n_w``, mixed-grid batches against per-image runs (encoder and
generate), tile / canvas inputs, and the errors."""

import copy

import pytest
import torch
import torch.nn.functional as F
from reference.official_dem import SpatialEmbed, to_package_state_dict
from reference.rect_reference import RectSpatialEmbed, rect_encode_images
from transformers import AutoModel

from inf_llava import DualPerspectiveEnhancement, InfLlavaForConditionalGeneration, local_crops
from inf_llava.conversion.keys import dem_key_to_official
from inf_llava.presets import processor_for, tiny_config

NON_SQUARE = [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2), (2, 4), (4, 2), (1, 5), (3, 5)]


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _ref_dem(dim, heads, seed=0):
    torch.manual_seed(seed)
    ref = RectSpatialEmbed(dim, heads).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.05)
    return ref


def test_rect_reference_is_the_square_reference_on_square_grids():
    ref = _ref_dem(32, 4)
    square = SpatialEmbed(32, 4).eval()
    square.load_state_dict(ref.state_dict())
    feats = [torch.randn(2, 36, 32) for _ in range(18)]
    with torch.no_grad():
        assert torch.equal(ref(feats, 3, 3), square(feats, 3))


@pytest.mark.parametrize("grid", NON_SQUARE)
@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_dem_on_non_square_grids_matches_reference(grid, impl):
    n_h, n_w = grid
    K, p, dim = n_h * n_w, 6 if grid != (3, 5) else 15, 32
    ref = _ref_dem(dim, 4)
    fixed = DualPerspectiveEnhancement(dim, grid, 4, attn_implementation=impl).eval()
    shared = DualPerspectiveEnhancement(dim, None, 4, attn_implementation=impl).eval()  # grid given per call
    for dem in (fixed, shared):
        dem.load_state_dict(to_package_state_dict(ref.state_dict()))
    feats = [torch.randn(2, p * p, dim) for _ in range(2 * K)]
    local, strided = torch.stack(feats[:K], 1), torch.stack(feats[K:], 1)
    with torch.no_grad():
        expected = ref(feats, n_h, n_w)
        outs = [fixed(local, strided), fixed(local, strided, full=True), shared(local, strided, grid=grid)]
    for out in outs:
        assert out.shape == (2, p * p, dim)
        assert _rel(out, expected) < 1e-5
    # odd x odd grids with p divisible by the grid take the centre-only path (same output, checked above)
    assert fixed.centre_only_applies(p) == (n_h % 2 == 1 and n_w % 2 == 1 and p % n_h == 0 and p % n_w == 0)


def test_dem_pooling_on_a_non_square_grid():
    # bilinear (official) to (p, p): along the odd factor 3 an exact pick of the centre column, along the even
    # factor 2 the mean of the two middle rows; "avg": the mean of each 2x3 block.
    torch.manual_seed(0)
    x = torch.randn(1, 5, 2 * 4, 3 * 4)
    picked = F.interpolate(x, size=(4, 4), mode="bilinear", align_corners=False)
    assert torch.allclose(picked, (x[:, :, 0::2, 1::3] + x[:, :, 1::2, 1::3]) / 2, atol=1e-6)
    dem = DualPerspectiveEnhancement(32, (2, 3), 4, pooling="avg").eval()
    local, strided = torch.randn(1, 6, 16, 32), torch.randn(1, 6, 16, 32)
    with torch.no_grad():
        fuse, _ = dem._full_map(local, strided, 4, return_weights=False)  # (1, 8, 12, 32)
        out = dem(local, strided)
    assert torch.allclose(out, fuse.reshape(1, 4, 2, 4, 3, 32).mean(dim=(2, 4)).reshape(1, 16, 32), atol=1e-6)


def test_dem_without_a_grid_needs_one_per_call():
    dem = DualPerspectiveEnhancement(32, None, 4)
    with pytest.raises(ValueError, match="built without a grid; pass grid"):
        dem(torch.randn(1, 4, 36, 32), torch.randn(1, 4, 36, 32))
    with pytest.raises(ValueError, match="built for a 2x3 grid expects 6 sub-images, got 4"):
        dem(torch.randn(1, 4, 36, 32), torch.randn(1, 4, 36, 32), grid=(2, 3))


def _dynamic(tokenizer, seed=0, **overrides):
    config = tiny_config(tokenizer, grid="dynamic", **overrides)
    torch.manual_seed(seed)
    model = InfLlavaForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.image_encoder.dem.parameters():
            p.normal_(0, 0.2)
    return model


def _tiles(canvas, grid, k_max):
    tiles = local_crops(canvas, grid)
    pad = torch.zeros(canvas.shape[0], k_max - tiles.shape[1], *tiles.shape[2:])
    return torch.cat([tiles, pad], 1)


@pytest.mark.parametrize("grid", [(1, 1), (1, 3), (2, 4), (3, 2), (3, 3), (2, 2)])
def test_encoder_per_grid_matches_official_computation(tiny_tokenizer, grid):
    model = _dynamic(tiny_tokenizer)
    encoder = model.image_encoder
    full = AutoModel.from_config(copy.deepcopy(model.config.vision_config)).eval()
    full.load_state_dict(encoder.vision_tower.state_dict(), strict=False)
    ref_dem = RectSpatialEmbed(32, model.config.dem_num_heads).eval()
    ref_dem.load_state_dict({dem_key_to_official(k): v for k, v in encoder.dem.state_dict().items()})
    n_h, n_w = grid
    canvas = torch.randn(2, 3, 24 * n_h, 24 * n_w)
    with torch.no_grad():
        ours = model.get_image_features(_tiles(canvas, grid, 9), torch.tensor([grid, grid]))
        ref = rect_encode_images(canvas, full, ref_dem, encoder.projector, n_h, n_w)
    assert ours.shape == (2, 36, 64)
    assert _rel(ours, ref) < 1e-5


MIXED = [(2, 4), (4, 2), (3, 3), (2, 4), (1, 1), (1, 2)]


def test_mixed_grid_batch_equals_per_image_and_uses_one_tower_call(tiny_tokenizer):
    model = _dynamic(tiny_tokenizer)
    torch.manual_seed(1)
    canvases = [torch.randn(1, 3, 24 * h, 24 * w) for h, w in MIXED]
    tiles = torch.cat([_tiles(c, g, 9) for c, g in zip(canvases, MIXED)])
    grids = torch.tensor(MIXED)
    calls = []
    hook = model.image_encoder.vision_tower.register_forward_pre_hook(
        lambda m, args, kwargs: calls.append(kwargs["pixel_values"].shape[0]), with_kwargs=True
    )
    with torch.no_grad():
        batch = model.get_image_features(tiles, grids)
        hook.remove()
        singles = [
            model.get_image_features(tiles[i : i + 1, : h * w], grids[i : i + 1]) for i, (h, w) in enumerate(MIXED)
        ]
        canvas_inputs = [model.get_image_features(c) for c in canvases]  # (1, 3, n_h S, n_w S) without image_grids
    # views per image: even grids 2K + 1 (the base view is a real bicubic resize), odd ones K + 1, 1x1 gives 2.
    assert calls == [17 + 17 + 10 + 17 + 2 + 5]
    enc = model.image_encoder
    assert [enc.views_per_image(model.config.geometry.for_grid(g)) for g in MIXED] == [17, 17, 10, 17, 2, 5]
    for i in range(len(MIXED)):
        assert torch.allclose(batch[i], singles[i][0], atol=1e-6, rtol=1e-5), MIXED[i]
        assert torch.equal(singles[i], canvas_inputs[i])


def test_base_view_of_a_non_square_canvas_is_the_bicubic_squash(tiny_tokenizer):
    enc = _dynamic(tiny_tokenizer).image_encoder
    geo = enc.geometry
    for grid in [(1, 3), (2, 4), (4, 2)]:
        canvas = torch.randn(1, 3, 24 * grid[0], 24 * grid[1])
        low = F.interpolate(canvas, size=(24, 24), mode="bicubic", align_corners=False)
        assert torch.allclose(enc.low_res(canvas, geo.for_grid(grid)), low, atol=1e-6)
    canvas = torch.randn(1, 3, 24, 72)  # odd factors: exactly the centre strided view
    assert torch.equal(enc.low_res(canvas, geo.for_grid((1, 3))), canvas[:, :, 0::1, 1::3])


def test_fixed_model_accepts_matching_image_grids_and_rejects_others(tiny_model):
    pixels = torch.randn(2, 3, 72, 72)
    with torch.no_grad():
        plain = tiny_model.get_image_features(pixels)
        with_grids = tiny_model.get_image_features(pixels, torch.tensor([[3, 3], [3, 3]]))
        tiles = tiny_model.get_image_features(local_crops(pixels, 3), torch.tensor([[3, 3], [3, 3]]))
    assert torch.equal(plain, with_grids) and torch.allclose(plain, tiles, atol=1e-6)
    with pytest.raises(ValueError, match="grid 2x4 is not this model's 3x3 grid"):
        tiny_model.get_image_features(torch.randn(1, 9, 3, 24, 24), torch.tensor([[2, 4]]))


def test_dynamic_input_errors(tiny_tokenizer):
    model = _dynamic(tiny_tokenizer)
    feats = model.get_image_features
    cases = [
        ((torch.randn(1, 9, 3, 24, 24), None), "tile pixel_values need image_grids"),
        ((torch.randn(1, 9, 3, 24, 24), torch.tensor([[5, 5]])), "grid 5x5 is not one of this model's candidate"),
        ((torch.randn(1, 4, 3, 24, 24), torch.tensor([[2, 4]])), "grid 2x4 needs 8 tiles but pixel_values holds 4"),
        ((torch.randn(1, 9, 3, 20, 20), torch.tensor([[3, 3]])), "tiles must be \\(3, 24, 24\\)"),
        ((torch.randn(2, 9, 3, 24, 24), torch.tensor([[3, 3]])), "image_grids must be \\(2, 2\\)"),
        ((torch.randn(1, 3, 50, 72), None), "a 50x72 image is not a whole grid of 24-px views"),
        ((torch.randn(1, 3, 24, 240), None), "grid 1x10 is not one of this model's candidate grids"),
        ((torch.randn(2, 3, 48, 96), torch.tensor([[2, 4], [4, 2]])), "images of several grids need"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            feats(*args)
        assert "\n" not in str(error.value)


def test_mixed_grid_training_step_has_gradients(tiny_tokenizer):
    model = _dynamic(tiny_tokenizer).train()
    tiles = torch.randn(3, 9, 3, 24, 24)
    out = model.get_image_features(tiles, torch.tensor([[2, 4], [3, 3], [4, 2]]))
    out.sum().backward()
    dem = model.image_encoder.dem
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in dem.parameters())
    assert model.image_encoder.vision_tower.embeddings.patch_embedding.weight.grad.abs().sum() > 0


def test_generate_mixed_grid_batch_equals_per_image(tiny_tokenizer):
    from conftest import random_image

    model = _dynamic(tiny_tokenizer)
    processor = processor_for(model.config, tiny_tokenizer)
    sizes = [(144, 72), (72, 144), (80, 80), (20, 30)]
    images = [random_image(i, size) for i, size in enumerate(sizes)]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}],
        add_generation_prompt=True,
    )
    batch = processor(images=images, text=[prompt] * len(images))
    assert batch["image_grids"].tolist() == [[2, 4], [4, 2], [3, 3], [2, 1]]  # 20x30 is taller than a view
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=processor.pad_token_id)
    with torch.no_grad():
        together = model.generate(**batch, **kwargs)[:, batch["input_ids"].shape[1] :]
        alone = [model.generate(**processor(images=[im], text=prompt), **kwargs)[0, -6:] for im in images]
    assert [row.tolist() for row in together] == [row.tolist() for row in alone]
    assert len({tuple(row.tolist()) for row in together}) > 1  # the images really differ in what they produce


def test_save_and_reload_keeps_the_dynamic_model(tiny_tokenizer, tmp_path):
    from conftest import random_image

    from inf_llava import InfLlavaProcessor

    model = _dynamic(tiny_tokenizer)
    processor = processor_for(model.config, tiny_tokenizer)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = InfLlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    again_processor = InfLlavaProcessor.from_pretrained(tmp_path)
    assert again.config.grid == "dynamic" and again.config.geometry == model.config.geometry
    assert again_processor.geometry == processor.geometry and again_processor.image_processor.grids is not None
    inputs = again_processor.image_processor([random_image(0, (144, 72)), random_image(1, (50, 50))])
    with torch.no_grad():
        assert torch.equal(
            again.get_image_features(inputs["pixel_values"], inputs["image_grids"]),
            model.get_image_features(inputs["pixel_values"], inputs["image_grids"]),
        )


def test_crops_and_merges_are_inverses_on_every_candidate_grid(tiny_tokenizer):
    from inf_llava import global_crops, merge_global, merge_local

    geometry = tiny_config(tiny_tokenizer, grid="dynamic").geometry
    for grid in geometry.grids:
        g = geometry.for_grid(grid)
        pixels = torch.randn(2, 3, *g.high_res_size)
        feats = torch.randn(2, *g.feature_map_size, 8)  # (B, n_h p, n_w p, D), the DEM's layout
        for split, merge in ((local_crops, merge_local), (global_crops, merge_global)):
            views = split(pixels, grid)
            assert views.shape == (2, g.num_crops, 3, 24, 24)
            assert torch.equal(merge(views, grid), pixels)
            windows = split(feats, grid, channels_last=True)
            assert windows.shape == (2, g.num_crops, 6, 6, 8)
            assert torch.equal(merge(windows, grid, channels_last=True), feats)
