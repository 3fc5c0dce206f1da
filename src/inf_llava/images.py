"""Loading user images safely: one place that turns a path, bytes or PIL image into an RGB-convertible image, or a
one-line :class:`~inf_llava.errors.ImageError` naming the source and the reason."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .errors import ImageError

# Refuse images above this many pixels before decoding them (decompression bombs). 64 MP covers any camera photo.
DEFAULT_MAX_PIXELS = 64_000_000


def load_image(
    source: str | os.PathLike | bytes | Image.Image,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Open and fully decode an image (first frame of animations). ``name`` labels the source in errors."""
    if isinstance(source, Image.Image):
        _check_pixels(source, max_pixels, name or "image")
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "image bytes"
        if not len(source):
            raise ImageError(f"{label}: empty (0 bytes)")
        stream = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        label = name or str(path)
        if not path.is_file():
            raise ImageError(f"{label}: no such image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{label}: empty file (0 bytes)")
        stream = io.BytesIO(path.read_bytes())
    try:
        with Image.open(stream) as opened:
            _check_pixels(opened, max_pixels, label)
            opened.seek(0)
            opened.load()
            image = opened.copy() if getattr(opened, "n_frames", 1) == 1 else _first_frame(opened)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{label}: refused as a decompression bomb ({exc})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from None
    return image


def _first_frame(image: Image.Image) -> Image.Image:
    image.seek(0)
    return image.convert("RGBA") if image.mode == "P" else image.copy()


def _check_pixels(image: Image.Image, max_pixels: int | None, label: str) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"{label}: empty image ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageError(
            f"{label}: {width}x{height} = {width * height} pixels is over the limit of {max_pixels} "
            "(raise it with --max-image-pixels)"
        )
