"""Hostile and unusual images: every one is either decoded to a sensible upright RGB picture or refused with one
ImageError line naming the source; ordinary images take exactly the official preprocessing path."""

import io
import warnings

import numpy as np
import pytest
from conftest import random_image, shapes_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from inf_llava.errors import ImageError
from inf_llava.images import load_image, to_rgb
from inf_llava.processing import image_processing
from inf_llava.processing.image_processing import InfLlavaImageProcessor, pad_color, pad_to_aspect, preprocess_image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def official_preprocess(image, height, width):
    """The official path (spec 8.1-8.3) for images that need no special handling: convert, expand2square, CLIP."""
    image = ImageOps.exif_transpose(image).convert("RGB")
    image = pad_to_aspect(image, height, width, pad_color(image_processing.CLIP_MEAN))
    w, h = image.size
    new_w, new_h = image_processing.cover_size(w, h, height, width)
    image = image.resize((new_w, new_h), resample=Image.Resampling.BICUBIC, reducing_gap=None)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    array = np.asarray(image, dtype=np.uint8)[top : top + height, left : left + width]
    array = (array * (1 / 255)).astype(np.float32)
    array = (array - np.float32(image_processing.CLIP_MEAN)) / np.float32(image_processing.CLIP_STD)
    return array.transpose(2, 0, 1)


# ---- refused inputs: one line naming the file and the reason ------------------------------------------------------
@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file (0 bytes)"),
        (b"this is not an image at all", "not a recognised image format"),
        (encode(random_image(0, (64, 48)), "PNG")[:120], "corrupt or truncated image"),
        (encode(random_image(1, (64, 48)), "JPEG")[:300], "corrupt or truncated image"),
        (b"GIF89a" + b"\x00" * 20, "not a recognised image format"),
    ],
    ids=["zero-bytes", "text-as-jpg", "truncated-png", "truncated-jpeg", "gif-header-only"],
)
def test_bad_files_are_refused_with_one_line(tmp_path, data, reason):
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and reason in message and "\n" not in message


def test_truncated_files_are_refused_even_when_pillow_is_told_to_accept_them(monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as importing lmms-eval does
    with pytest.raises(ImageError, match="corrupt or truncated image"):
        load_image(encode(random_image(0, (64, 48)), "PNG")[:120])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored
    assert load_image(encode(random_image(0, (64, 48)), "PNG")).size == (64, 48)


def test_missing_file_and_unreadable_path(tmp_path):
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="not a regular file"):
        load_image(tmp_path)  # a directory
    with pytest.raises(ImageError, match="/dev/zero: not a regular file"):
        load_image("/dev/zero")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(encode(Image.new("1", (12000, 12000))))  # 144 MP of zeros: a few hundred kB on disk
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ImageError, match=r"12000x12000 = 144000000 pixels is over the limit of 64000000"):
        load_image(bomb)
    small = encode(random_image(2, (100, 100)))
    with pytest.raises(ImageError, match="over the limit of 5000"):
        load_image(small, max_pixels=5000)
    assert load_image(small, max_pixels=10_000).size == (100, 100)


# ---- every PIL mode -----------------------------------------------------------------------------------------------
def test_every_mode_becomes_meaningful_rgb():
    gradient = np.tile(np.arange(64, dtype=np.float64), (8, 1))  # (8, 64), left dark -> right bright
    cases = {
        "1": Image.fromarray(gradient >= 32),
        "L": Image.fromarray((gradient * 4).astype(np.uint8)),
        "I;16": Image.fromarray((gradient * 1040).astype(np.uint16)),
        "I": Image.fromarray((gradient * 1040).astype(np.int32)),
        "F": Image.fromarray((gradient / 63).astype(np.float32)),
        "CMYK": Image.new("CMYK", (64, 8), (0, 255, 255, 0)),  # red
    }
    cases["I;16"] = cases["I;16"] if cases["I;16"].mode == "I;16" else cases["I;16"].convert("I;16")
    formats = {"CMYK": "TIFF", "F": "TIFF", "I": "TIFF"}
    for mode, image in cases.items():
        assert image.mode == mode, (mode, image.mode)
        loaded = load_image(encode(image, formats.get(mode, "PNG")), name=mode)
        assert loaded.mode == "RGB" and loaded.size == (64, 8), mode
        array = np.asarray(loaded).astype(int)
        if mode == "CMYK":
            assert (array == [255, 0, 0]).all()
            continue
        left, right = array[:, 0].mean(), array[:, -1].mean()
        assert left < 10 and right > 245, (mode, left, right)  # scaled, not clipped to white or black
    # 16-bit mid-grey maps to 8-bit mid-grey (65535 -> 255 exactly)
    assert load_image(Image.fromarray(np.full((2, 2), 32896, np.uint16))).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(Image.fromarray(np.full((2, 2), 0.5, np.float32))).getpixel((0, 0)) == (128, 128, 128)


def test_transparency_is_dropped_as_in_the_official_code():
    rgba = Image.new("RGBA", (4, 2), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    rgba.putpixel((1, 0), (250, 250, 250, 128))  # half transparent white
    la = Image.new("LA", (2, 1), (70, 0))
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    palette.putpixel((1, 0), 1)
    for image, options in ((rgba, {}), (la, {}), (palette, {"transparency": 0})):
        data = encode(image, **options)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's note on palette transparency
            official = Image.open(io.BytesIO(data)).convert("RGB")
        assert np.array_equal(np.asarray(load_image(data)), np.asarray(official)), image.mode
    assert load_image(encode(rgba)).getpixel((1, 0)) == (250, 250, 250)


def test_exif_orientation_is_applied(tmp_path):
    image = shapes_image((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "rotated.jpg"
    image.save(path, "JPEG", exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == (40, 80)
    stored = Image.open(path)
    assert np.array_equal(np.asarray(loaded), np.asarray(stored.transpose(Image.Transpose.ROTATE_270)))
    processor = InfLlavaImageProcessor(size={"height": 72, "width": 72})
    assert np.array_equal(processor.process_one(stored), processor.process_one(loaded))


def test_corrupt_exif_is_ignored():
    image = random_image(3, (20, 10))
    data = encode(image, "JPEG", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff")  # claims 65535 entries
    assert load_image(data).size == (20, 10)


def test_animated_image_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), "red"), Image.new("RGB", (16, 16), "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert load_image(data).getpixel((8, 8)) == (255, 0, 0)
    webp = encode(frames[1], "WEBP", save_all=True, append_images=frames[:1], lossless=True)
    assert load_image(webp).getpixel((8, 8)) == (0, 0, 255)


# ---- preprocessing: exact for ordinary images, bounded for extreme ones ------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA-opaque", "P"])
@pytest.mark.parametrize("size", [(64, 48), (33, 90), (72, 72)])
def test_ordinary_images_preprocess_exactly_as_the_official_path(mode, size):
    image = random_image(sum(size), size)
    if mode == "L":
        image = image.convert("L")
    elif mode == "RGBA-opaque":
        image = image.convert("RGBA")
    elif mode == "P":
        image = image.convert("P")
    ours = preprocess_image(image, 72, 72)
    assert np.array_equal(ours, official_preprocess(image, 72, 72))


def test_extreme_aspect_ratio_is_bounded_and_close_to_the_exact_path(monkeypatch):
    wide = random_image(4, (3000, 6))
    exact = preprocess_image(wide, 72, 72)
    monkeypatch.setattr(image_processing, "MAX_CANVAS_PIXELS", 1_000_000)  # force the pre-shrink for this image
    shrunk = image_processing._bounded(wide, 72, 72, True, Image.Resampling.BICUBIC)
    assert max(shrunk.size) == image_processing.PRESHRINK_FACTOR * 72
    approx = preprocess_image(wide, 72, 72)
    assert approx.shape == exact.shape == (3, 72, 72)
    assert np.abs(approx - exact).mean() < 0.05  # normalised units; the content band is a few pixels high


@pytest.mark.parametrize("size", [(1, 1), (20000, 10), (10, 20000), (2, 1)])
def test_degenerate_sizes_preprocess(size):
    image = Image.new("RGB", size, (200, 30, 30))
    out = InfLlavaImageProcessor(size={"height": 72, "width": 72})([load_image(image)])["pixel_values"]
    assert out.shape == (1, 3, 72, 72) and np.isfinite(out.numpy()).all()


def test_to_rgb_keeps_rgb_objects():
    image = random_image(5)
    assert to_rgb(image) is image


# ---- fuzz: arbitrary bytes never escape as anything but ImageError -----------------------------------------------
_SEED_FILES = [encode(random_image(6, (12, 9)), fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(range(len(_SEED_FILES))), cut=st.integers(0, 4000), flips=st.lists(st.integers(0, 4000)))
def test_fuzzed_files_load_or_raise_image_error(seed, cut, flips):
    data = bytearray(_SEED_FILES[seed])
    for position in flips:
        data[position % len(data)] ^= 0x5A
    data = bytes(data[: max(1, cut)])
    try:
        image = load_image(data, max_pixels=1_000_000)
    except ImageError as exc:
        assert "\n" not in str(exc)
    else:
        assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
