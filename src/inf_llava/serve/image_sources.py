"""Turning an ``image_url`` from a request into a PIL image, safely.

- ``data:`` URLs (base64) are decoded and checked like any image (size, pixel limit, format);
- ``http(s)`` URLs are fetched only when the server allows remote images, with a timeout, a byte limit,
  redirects restricted to http(s) (no ``file:`` / ``ftp:`` via a redirect), no proxies, and only from public
  addresses: the address a connection actually reached is checked (so redirects and DNS rebinding cannot reach
  loopback, private, link-local or cloud-metadata addresses) unless private hosts are explicitly allowed;
- local paths and ``file:`` URLs are always refused: a request must never read the server's disk.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import ipaddress
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


def _check_peer(sock, host: str) -> None:
    address = ipaddress.ip_address(sock.getpeername()[0].split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if not address.is_global:
        sock.close()
        raise OSError(f"{host} resolves to {address}, not a public address (see --allow-private-image-hosts)")


class _PublicHTTPConnection(http.client.HTTPConnection):
    def connect(self):
        super().connect()
        _check_peer(self.sock, self.host)


class _PublicHTTPSConnection(http.client.HTTPSConnection):
    def connect(self):
        super().connect()
        _check_peer(self.sock, self.host)


class _PublicHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_PublicHTTPConnection, req)


class _PublicHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_PublicHTTPSConnection, req, context=self._context)


def _opener(public_only: bool = True) -> urllib.request.OpenerDirector:
    """An opener with http(s) handlers only (the default one also opens file: and ftp: URLs, and uses proxies);
    with ``public_only`` every connection must reach a public address."""
    opener = urllib.request.OpenerDirector()
    http_handler, https_handler = (
        (_PublicHTTPHandler(), _PublicHTTPSHandler())
        if public_only
        else (urllib.request.HTTPHandler(), urllib.request.HTTPSHandler())
    )
    for handler in (
        http_handler,
        https_handler,
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
        with _opener(not settings.allow_private_image_hosts).open(request, timeout=settings.remote_timeout) as response:
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
