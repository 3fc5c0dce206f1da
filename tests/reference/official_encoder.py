"""Re-export of the from-spec official `encode_images` reference."""

from inf_llava.reference import official_encode_images  # noqa: F401
