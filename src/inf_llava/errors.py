"""Errors users see. Each carries a one-line message naming the input and the problem; the CLI prints it without a
traceback and exits non-zero."""

from __future__ import annotations


class InfLlavaError(Exception):
    """Base class of the package's user-facing errors (a ``ValueError`` is also accepted by callers)."""


class ImageError(InfLlavaError, ValueError):
    """An image could not be used: unreadable, corrupt, too large, ..."""


class DataError(InfLlavaError, ValueError):
    """A data file or sample is malformed (the message names the file, line and sample id)."""


class ModelLoadError(InfLlavaError, ValueError):
    """A model directory or checkpoint could not be loaded."""
