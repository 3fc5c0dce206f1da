"""`LlavaDataset`: validated LLaVA samples -> token ids, labels and pixels, one sample at a time (lazy).

Images are decoded and tokenisation runs only when a sample is fetched (in DataLoader workers), so start-up costs a
validation pass over the records, not over the pixels. Labels come from the template's assistant spans
(:meth:`InfLlavaProcessor.encode_conversation`): only assistant text and its end-of-turn marker are supervised, and
there is no token counting that could silently wipe a sample ("tokenization mismatch" in the official code).

A problem found only at fetch time (a corrupt image, a sample longer than ``max_length``) raises a DataError naming
the sample, or with ``skip_invalid`` becomes an :class:`InvalidExample` that the collator leaves out and the trainer
reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from ..images import DEFAULT_MAX_PIXELS, load_image
from .llava_format import InvalidRecord, LlavaSample


@dataclass(frozen=True)
class Example:
    """One encoded sample: ``input_ids`` / ``labels`` ``(T,)`` int64, ``pixel_values`` ``(n_images, 3, H, W)`` or
    None for text-only samples. A dynamic-grid processor gives ``(n_images, K_max, 3, S, S)`` tiles and
    ``image_grids`` ``(n_images, 2)``."""

    index: int
    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None
    image_grids: torch.Tensor | None = None


@dataclass(frozen=True)
class InvalidExample:
    """A sample that failed at fetch time under ``skip_invalid``."""

    index: int
    record: InvalidRecord


class LlavaDataset(Dataset):
    """Map-style dataset over validated :class:`LlavaSample` records.

    Args:
        samples: validated records (see :func:`~inf_llava.data.llava_format.load_records`).
        processor: the model's :class:`~inf_llava.InfLlavaProcessor`.
        template: conversation template used for training (``plain`` for stage 1, ``llama3`` ...).
        max_length: longest allowed sequence in tokens, image slots included; longer samples are errors (image
            slots are never truncated, and cutting text would silently drop supervision).
        max_image_pixels: decompression-bomb limit passed to :func:`~inf_llava.images.load_image`.
        skip_invalid: return :class:`InvalidExample` instead of raising for fetch-time problems (the caller decides;
            the trainer always sets it and then stops or skips in the main process).
        image_processor: preprocessing for training (default: the processor's own).
    """

    def __init__(
        self,
        samples: list[LlavaSample],
        processor,
        template: str,
        max_length: int = 2048,
        max_image_pixels: int | None = DEFAULT_MAX_PIXELS,
        skip_invalid: bool = False,
        image_processor=None,
    ):
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.samples = samples
        self.processor = processor
        self.template = template
        self.max_length = max_length
        self.max_image_pixels = max_image_pixels
        self.skip_invalid = skip_invalid
        self.image_processor = image_processor if image_processor is not None else processor.image_processor

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def modality_lengths(self) -> list[int]:
        return [sample.modality_length for sample in self.samples]

    @property
    def has_text_only(self) -> bool:
        return any(not sample.has_images for sample in self.samples)

    def __getitem__(self, index: int) -> Example | InvalidExample:
        sample = self.samples[index]
        try:
            return self.encode(index, sample)
        except (DataError, ValueError) as exc:
            reason = str(exc)
            # Image errors already name the file; prefix the sample so the message says which record it was.
            record = InvalidRecord(sample.where, sample.sample_id, reason)
            if self.skip_invalid:
                return InvalidExample(index, record)
            raise DataError(record.message) from None

    def encode(self, index: int, sample: LlavaSample) -> Example:
        try:
            encoded = self.processor.encode_conversation(sample.chat_messages(), template=self.template)
        except ValueError as exc:
            raise DataError(f"cannot render the conversation with the {self.template!r} template: {exc}") from None
        length = len(encoded.input_ids)
        if length > self.max_length:
            raise DataError(
                f"{length} tokens (with {len(sample.images)} x {self.processor.tokens_per_image} image slots) is over "
                f"max_length {self.max_length}; image slots are never truncated: raise --max-length or shorten it"
            )
        if encoded.num_supervised == 0:
            raise DataError("no supervised tokens (every assistant turn is empty after rendering)")
        pixels: dict = {}
        if sample.images:
            images = [load_image(path, max_pixels=self.max_image_pixels) for path in sample.images]
            pixels = self.image_processor(images, return_tensors="pt")
        return Example(
            index=index,
            input_ids=torch.tensor(encoded.input_ids, dtype=torch.long),
            labels=torch.tensor(encoded.labels, dtype=torch.long),
            pixel_values=pixels.get("pixel_values"),
            image_grids=pixels.get("image_grids"),
        )
