"""Turning an ``image_url`` from a request into a PIL image, safely.

- ``data:`` URLs (base64) are decoded and checked like any image (size, pixel limit, format);
- ``http(s)`` URLs are fetched only when the server allows remote images, with a timeout, a byte limit and
  redirects restricted to http(s) (no ``file:`` / ``ftp:`` via a redirect);
- local paths and ``file:`` URLs are always refused: a request must never read the server's disk.
"""

from __future__ import annotations

import base64
import binascii
import urllib.error
import urllib.request
from urllib.parse import unquote_to_bytes, urlsplit

from PIL import Image

from ..errors import ImageError
from ..images import load_image
from .errors import APIError
from .settings import ServerSettings


def decode_image_url(url: str, index: int, settings: ServerSettings) -> Image.Image:
    """``image_url`` -> RGB image; raises :class:`APIError` (400) naming the image and the reason."""
    label = f"image {index}"
    head = url[:64]  # the scheme is all that decides; never parse a multi-megabyte data URL
    try:
        scheme = urlsplit(head).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme == "data":
        data = _data_url_bytes(url, label)
    elif scheme in ("http", "https"):
        if not settings.allow_remote_images:
            raise APIError(
                400,
                f"{label}: remote image URLs are disabled on this server; send the image as a base64 data: URL "
                "(or start the server with --allow-remote-images)",
                code="remote_images_disabled",
            )
        data = _fetch(url, label, settings)
    else:
        raise APIError(
            400,
            f"{label}: only data: URLs{' and http(s) URLs' if settings.allow_remote_images else ''} are accepted; "
            "local files and file: URLs are never read",
            code="unsupported_image_url",
        )
    try:
        return load_image(data, max_pixels=settings.max_image_pixels, name=label)
    except ImageError as exc:
        raise APIError(
            400, str(exc).replace("--max-image-pixels", "the server's --max-image-pixels"), code="invalid_image"
        ) from None


def _data_url_bytes(url: str, label: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma:
        raise APIError(400, f"{label}: malformed data: URL (no comma)", code="invalid_image")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise APIError(400, f"{label}: malformed base64 in data: URL", code="invalid_image") from None
    return unquote_to_bytes(payload)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    max_redirections = 3

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise urllib.error.URLError(f"redirect to a non-http(s) URL refused ({newurl[:60]})")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener() -> urllib.request.OpenerDirector:
    """An opener with http(s) handlers only (the default one also opens file: and ftp: URLs)."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        _HttpOnlyRedirects(),
        urllib.request.HTTPErrorProcessor(),
        urllib.request.HTTPDefaultErrorHandler(),
    ):
        opener.add_handler(handler)
    return opener


def _fetch(url: str, label: str, settings: ServerSettings) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "inf-llava-server"})
    limit = settings.remote_max_bytes
    try:
        with _opener().open(request, timeout=settings.remote_timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise APIError(
                    400, f"{label}: remote image is {length} bytes, over the limit of {limit}", code="image_too_large"
                )
            data = response.read(limit + 1)
    except APIError:
        raise
    except urllib.error.HTTPError as exc:
        raise APIError(
            400, f"{label}: could not fetch the image URL (HTTP {exc.code} {exc.reason})", code="image_fetch_failed"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise APIError(400, f"{label}: could not fetch the image URL ({reason})", code="image_fetch_failed") from None
    if len(data) > limit:
        raise APIError(400, f"{label}: remote image is over the limit of {limit} bytes", code="image_too_large")
    return data
