"""Loading user images safely: one place that turns a path, bytes or PIL image into an upright RGB image, or a
one-line :class:`~inf_llava.errors.ImageError` naming the source and the reason.

What users feed a multimodal model is arbitrary, so every path in here is defensive:

- the pixel count is checked from the header *before* decoding (decompression bombs; the limit is configurable);
- zero-byte, truncated, corrupt and non-image files become an :class:`ImageError`, never a PIL traceback;
- animated images give their first frame (without walking every frame);
- EXIF orientation is applied (a corrupt EXIF block is ignored rather than fatal);
- every PIL mode becomes RGB with a meaningful picture (:func:`to_rgb`): 16-bit and 32-bit integer images are scaled
  down instead of clipped to white (what ``.convert("RGB")`` does to them), float images in ``[0, 1]`` are scaled up.
  Transparency is dropped exactly as the official code's ``.convert("RGB")`` drops it (transparent pixels show the
  colour they store), so the model sees what the released weights saw in training and evaluation; every other mode
  (1, L, P, CMYK, YCbCr, ...) also converts as in the official code.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Our own pixel limit (below) is checked first and says what to do; Pillow's generic warning would only add noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Refuse images above this many pixels before decoding them (decompression bombs). 64 MP covers any camera photo.
DEFAULT_MAX_PIXELS = 64_000_000
_INT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})


def load_image(
    source: str | os.PathLike | bytes | Image.Image,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Open and fully decode an image: an upright RGB :class:`PIL.Image.Image` (first frame of animations).

    ``name`` labels the source in errors (default: the path, or "image bytes"). Raises :class:`ImageError`.
    """
    if isinstance(source, Image.Image):
        label = name or "image"
        _check_pixels(source, max_pixels, label)
        return _converted(source, label)
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image bytes"
        if not len(source):
            raise ImageError(f"{label}: empty (0 bytes)")
        stream = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        label = name or str(path)
        try:
            if not path.exists():
                raise ImageError(f"{label}: no such image file")
            if not path.is_file():  # a directory, a device, a pipe: never read
                raise ImageError(f"{label}: not a regular file")
            if path.stat().st_size == 0:
                raise ImageError(f"{label}: empty file (0 bytes)")
            stream = path.open("rb")  # Pillow reads the header first: a huge file is refused before it is read
        except OSError as exc:
            raise ImageError(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        with stream, Image.open(stream) as opened:
            _check_pixels(opened, max_pixels, label)
            opened.seek(0)  # first frame; `is_animated` / `n_frames` would walk every frame of a GIF
            _load_strictly(opened)
            image = opened.copy()
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, IndexError, TypeError) as exc:
        # Pillow's decoders report corrupt data with a range of exception types.
        raise ImageError(f"{label}: corrupt or truncated image ({_reason(exc)})") from None
    return _converted(image, label)


_STRICT = threading.Lock()


def _load_strictly(image: Image.Image) -> None:
    """Decode, refusing truncated data even where another library (lmms-eval does, at import) has switched on
    Pillow's process-wide ``LOAD_TRUNCATED_IMAGES``, which would silently fill the missing part with grey."""
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        image.load()
        return
    with _STRICT:
        previous, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        try:
            image.load()
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> an upright RGB image (EXIF orientation applied, high bit depths scaled to 8 bits, alpha
    dropped as ``.convert("RGB")`` drops it). An RGB image without EXIF rotation is returned as is."""
    image = upright(image)
    if image.mode == "RGB":
        return image
    if image.mode in _INT_MODES or image.mode == "F":
        return Image.fromarray(_to_uint8(np.asarray(image), image.mode), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        # Same pixels as .convert("RGB"), without Pillow's warning about palette transparency.
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; an unreadable EXIF block leaves the image as stored."""
    try:
        if image.getexif().get(0x0112, 1) == 1:  # no rotation: keep the object (no copy)
            return image
        return ImageOps.exif_transpose(image)
    except Exception:  # Pillow raises assorted errors on malformed EXIF; the orientation is optional
        return image


def _to_uint8(array: np.ndarray, mode: str) -> np.ndarray:
    """Scale a one-channel integer or float image to 8 bits (16-bit data by 1/257; floats in [0, 1] by 255)."""
    values = np.nan_to_num(array.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    top = float(values.max()) if values.size else 0.0
    if mode.startswith("I;16") or (mode == "I" and top > 255):
        values = np.clip(values, 0, 65535) / 257.0
    elif mode == "F" and top <= 1.0 and float(values.min(initial=0.0)) >= 0.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)


def _converted(image: Image.Image, label: str) -> Image.Image:
    try:
        return to_rgb(image)
    except (OSError, ValueError, MemoryError) as exc:
        raise ImageError(f"{label}: cannot convert {image.mode} image to RGB ({_reason(exc)})") from None


def _check_pixels(image: Image.Image, max_pixels: int | None, label: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{label}: empty image ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{label}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels} "
            "(raise it with --max-image-pixels)"
        )


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
