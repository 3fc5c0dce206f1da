"""Server limits and switches, one frozen value passed to the app factory (no module-level state)."""

from __future__ import annotations

from dataclasses import dataclass

from ..images import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``inf-llava serve`` can be told; the defaults are safe for a server on a network.

    Args:
        model_name: the id served at ``/v1/models`` and expected in requests' ``model`` (default: the model folder's
            name; ``None`` accepts any name).
        api_key: when set, every ``/v1`` request needs ``Authorization: Bearer <key>``.
        cors_origins: browser origins allowed to call the API from other sites (empty: CORS off).
        max_request_bytes: request bodies above this are refused with 413 (base64 images included).
        max_images: images per request.
        max_image_pixels: decoded-size limit per image, checked from the header before decoding.
        max_tokens_limit: the largest ``max_tokens`` a request may ask for; ``default_max_tokens`` when it asks none.
        request_timeout: seconds from arrival to the last token; past it the request fails with 504 (a stream ends
            with an error event) and its generation is stopped.
        max_pending: requests queued or running at once; more are answered 429 at once (the client may retry).
        max_batch_size: requests that share one generate call; ``batch_wait_ms``: how long the scheduler waits for
            companions once a request arrives (0: batch only what is already queued).
        allow_remote_images: fetch ``http(s)`` image URLs (off by default); ``remote_max_bytes`` and
            ``remote_timeout`` bound each fetch, which must reach a public address unless
            ``allow_private_image_hosts`` (loopback, private, link-local, metadata addresses). Local paths and
            ``file:`` URLs are always refused.
    """

    model_name: str | None = None
    api_key: str | None = None
    cors_origins: tuple[str, ...] = ()
    max_request_bytes: int = 20 * 1024 * 1024
    max_images: int = 4
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS
    default_max_tokens: int = 512
    max_tokens_limit: int = 4096
    request_timeout: float = 300.0
    max_pending: int = 64
    max_batch_size: int = 8
    batch_wait_ms: float = 5.0
    allow_remote_images: bool = False
    remote_max_bytes: int = 10 * 1024 * 1024
    remote_timeout: float = 10.0
    allow_private_image_hosts: bool = False

    def __post_init__(self) -> None:
        for name in ("max_request_bytes", "max_images", "default_max_tokens", "max_tokens_limit", "max_pending"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.request_timeout <= 0 or self.remote_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if self.batch_wait_ms < 0:
            raise ValueError(f"batch_wait_ms must be >= 0, got {self.batch_wait_ms}")
