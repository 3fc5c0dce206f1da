"""The dynamic-grid image processor and processor: per-image grids, tile layout, shapes, slots, round trips, errors."""

import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image

from inf_llava import InfLlavaImageProcessor, InfLlavaProcessor, merge_local
from inf_llava.presets import processor_for, tiny_config
from inf_llava.processing.image_processing import pad_tiles, preprocess_image

# tiny preset: 24-px views, budget 9
WIDE, TALL, SQUARE, SMALL = (144, 72), (72, 144), (72, 72), (20, 20)  # PIL (width, height)


@pytest.fixture()
def dynamic_processor(tiny_tokenizer):
    return processor_for(tiny_config(tiny_tokenizer, grid="dynamic"), tiny_tokenizer)


def test_output_shapes_grids_and_tiles(dynamic_processor):
    images = [random_image(i, size) for i, size in enumerate((WIDE, TALL, SQUARE, SMALL))]
    out = dynamic_processor.image_processor(images)
    assert out["image_grids"].tolist() == [[2, 4], [4, 2], [3, 3], [1, 1]]
    assert out["image_grids"].dtype == torch.long
    assert out["pixel_values"].shape == (4, 9, 3, 24, 24) and out["pixel_values"].dtype == torch.float32
    for image, tiles, (n_h, n_w) in zip(images, out["pixel_values"], out["image_grids"].tolist()):
        K = n_h * n_w
        canvas = preprocess_image(image, 24 * n_h, 24 * n_w)  # padded to the canvas's aspect, then resized
        assert torch.equal(merge_local(tiles[:K], (n_h, n_w)), torch.from_numpy(canvas))
        assert not tiles[K:].any()  # zero tiles after the image's own


def test_wide_image_is_padded_to_its_grid_not_to_a_square(dynamic_processor, tiny_tokenizer):
    # A 150x60 (w x h) image: the 2x4 canvas (48x96) holds it at scale 0.64 -> 38.4x96, padded above and below.
    image = Image.new("RGB", (150, 60), (255, 0, 0))
    out = dynamic_processor.image_processor([image])
    assert out["image_grids"].tolist() == [[2, 4]]
    n_h, n_w = 2, 4
    canvas = merge_local(out["pixel_values"][0, : n_h * n_w], (n_h, n_w))
    red = canvas[0] > 1.5  # normalised red channel of pure red is ~1.93; the padding colour is ~0
    rows = red.any(dim=1).nonzero().flatten()
    image_rows = int(rows[-1] - rows[0] + 1)
    fixed = processor_for(tiny_config(tiny_tokenizer), tiny_tokenizer).image_processor([image])["pixel_values"][0]
    fixed_rows = int((fixed[0] > 1.5).any(dim=1).sum())
    # share of the canvas that is image: 38-39 of 48 rows dynamic, 28-29 of 72 rows in the fixed square layout
    assert 38 <= image_rows <= 39 and canvas.shape[1:] == (48, 96)
    assert 28 <= fixed_rows <= 29 and fixed.shape[1:] == (72, 72)


def test_upright_size_decides_the_grid(dynamic_processor):
    stored = random_image(0, WIDE)  # stored wide, EXIF says rotate 90: the photo is tall
    exif = Image.Exif()
    exif[0x0112] = 6
    import io

    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    rotated = Image.open(io.BytesIO(buffer.getvalue()))
    assert rotated.size == WIDE
    assert dynamic_processor.image_processor.select_grid(rotated) == (4, 2)
    assert dynamic_processor.image_processor([rotated])["image_grids"].tolist() == [[4, 2]]


def test_processor_call_gives_slots_and_grids(dynamic_processor):
    prompt = "USER: <image> and <image> ASSISTANT:"
    out = dynamic_processor(images=[random_image(0, WIDE), random_image(1, SMALL)], text=[prompt])
    assert set(out) == {"input_ids", "attention_mask", "pixel_values", "image_grids"}
    slots = int((out["input_ids"] == dynamic_processor.image_token_id).sum())
    assert slots == 2 * 36 == 2 * dynamic_processor.tokens_per_image  # p * p per image whatever the grid
    assert out["pixel_values"].shape == (2, 8, 3, 24, 24)  # padded to the batch's largest grid (2x4)


def test_return_types(dynamic_processor):
    images = [random_image(0, WIDE), random_image(1, TALL)]
    as_np = dynamic_processor.image_processor(images, return_tensors="np")
    assert isinstance(as_np["pixel_values"], np.ndarray) and as_np["image_grids"].tolist() == [[2, 4], [4, 2]]
    as_list = dynamic_processor.image_processor(images, return_tensors=None)
    assert [t.shape for t in as_list["pixel_values"]] == [(8, 3, 24, 24), (8, 3, 24, 24)]
    empty = dynamic_processor.image_processor([])
    assert empty["pixel_values"].shape == (0, 1, 3, 24, 24) and empty["image_grids"].shape == (0, 2)


def test_square_mode_resizes_and_crops_to_the_grid(tiny_tokenizer):
    geometry = tiny_config(tiny_tokenizer, grid="dynamic").geometry
    crop = InfLlavaImageProcessor.for_geometry(geometry, pad_to_square=False)
    image = random_image(0, (150, 60))
    out = crop([image])
    n_h, n_w = out["image_grids"][0].tolist()
    canvas = merge_local(out["pixel_values"][0, : n_h * n_w], (n_h, n_w))
    expected = preprocess_image(image, 24 * n_h, 24 * n_w, pad_to_square=False)
    assert torch.equal(canvas, torch.from_numpy(expected))


def test_save_and_load_round_trip(dynamic_processor, tmp_path):
    dynamic_processor.save_pretrained(tmp_path)
    loaded = InfLlavaProcessor.from_pretrained(tmp_path)
    assert loaded.geometry == dynamic_processor.geometry and "grids" in loaded.geometry
    assert loaded.image_processor.grids == dynamic_processor.image_processor.grids
    images = [random_image(0, WIDE), random_image(1, (33, 71))]
    a, b = loaded.image_processor(images), dynamic_processor.image_processor(images)
    assert torch.equal(a["pixel_values"], b["pixel_values"]) and torch.equal(a["image_grids"], b["image_grids"])


def test_fixed_processor_is_unchanged(tiny_processor):
    out = tiny_processor.image_processor([random_image(0, WIDE)])
    assert set(out) == {"pixel_values"} and out["pixel_values"].shape == (1, 3, 72, 72)
    assert "grids" not in tiny_processor.image_processor.to_dict() and "grids" not in tiny_processor.geometry


def test_errors(dynamic_processor, tiny_processor, tiny_tokenizer):
    geometry = tiny_config(tiny_tokenizer, grid="dynamic").geometry
    with pytest.raises(ValueError, match="dynamic grids need the 'high_res' preprocessing path"):
        InfLlavaImageProcessor.for_geometry(geometry, mode="base")
    with pytest.raises(ValueError, match="the image processor's grids .* are not the model geometry's"):
        InfLlavaProcessor(
            image_processor=tiny_processor.image_processor,
            tokenizer=tiny_tokenizer,
            geometry=dynamic_processor.geometry,
            image_token=dynamic_processor.image_token,
        )
    with pytest.raises(ValueError, match="size is the square view size"):
        InfLlavaImageProcessor(size={"height": 24, "width": 48}, grids=[[1, 1]])
    with pytest.raises(ValueError, match="one fixed output size"):
        tiny_processor.image_processor.select_grid(random_image(0))


def test_pad_tiles():
    a, b = torch.ones(2, 3, 3, 4, 4), torch.full((1, 5, 3, 4, 4), 2.0)
    out = pad_tiles([a, b])
    assert out.shape == (3, 5, 3, 4, 4)
    assert torch.equal(out[:2, :3], a) and not out[:2, 3:].any() and torch.equal(out[2], b[0])


def test_switching_a_saved_fixed_model_to_dynamic_grids(tiny_model_dir):
    from inf_llava import InfLlavaConfig, InfLlavaForConditionalGeneration

    fixed = InfLlavaForConditionalGeneration.from_pretrained(tiny_model_dir).eval()
    fixed_processor = InfLlavaProcessor.from_pretrained(tiny_model_dir)
    config = InfLlavaConfig.from_pretrained(tiny_model_dir)
    config.grid = "dynamic"
    config.validate_settings()
    dynamic = InfLlavaForConditionalGeneration.from_pretrained(tiny_model_dir, config=config).eval()
    processor = fixed_processor.with_geometry(config.geometry)
    assert processor.image_processor.grids[-1] == [9, 1] and processor.template == fixed_processor.template
    square = random_image(0, SQUARE)  # 72x72: the dynamic grid is 3x3 and the pixels are the fixed model's
    a, b = processor.image_processor([square]), fixed_processor.image_processor([square])
    assert a["image_grids"].tolist() == [[3, 3]]
    assert torch.equal(merge_local(a["pixel_values"][0], 3), b["pixel_values"][0])
    with torch.no_grad():
        assert torch.equal(
            dynamic.get_image_features(a["pixel_values"], a["image_grids"]), fixed.get_image_features(b["pixel_values"])
        )
    config.grid = "dyn"
    with pytest.raises(ValueError, match="grid must be an int, a pair"):
        config.validate_settings()
