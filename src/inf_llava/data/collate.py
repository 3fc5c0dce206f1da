"""Training collation: right padding, ignored labels on padding, pixels only for the samples that have images.

Right padding (the official training side) keeps every real token at the same position whatever the batch; the
model's image-slot check then sees exactly as many images as slots, because only samples with images contribute
``pixel_values`` (in batch order, which is the order the model scatters them in). Dynamic-grid samples carry tiles
and ``image_grids``; their tiles are padded to the batch's largest grid (:func:`pad_tiles`) and the grids
concatenated in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.nn.utils.rnn import pad_sequence

from ..processing.image_processing import pad_tiles
from ..processing.tokenization import IGNORE_INDEX
from .dataset import Example, InvalidExample


@dataclass
class TrainingBatch:
    """A micro-batch. ``input_ids`` / ``labels`` / ``attention_mask`` ``(B, T)``; ``pixel_values``
    ``(N_images, 3, H, W)`` (dynamic grids: ``(N_images, K_max, 3, S, S)`` with ``image_grids`` ``(N_images, 2)``)
    or None. ``indices`` are dataset indices; ``invalid`` lists samples left out under ``skip_invalid``."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    pixel_values: torch.Tensor | None
    indices: list[int]
    invalid: list[InvalidExample] = field(default_factory=list)
    image_grids: torch.Tensor | None = None

    @property
    def empty(self) -> bool:
        return not self.indices

    @property
    def num_supervised(self) -> int:
        """Tokens that contribute to the loss: labels shifted by one, as the causal LM loss sees them."""
        return int((self.labels[:, 1:] != IGNORE_INDEX).sum())

    def model_inputs(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        inputs = {
            "input_ids": self.input_ids.to(device),
            "attention_mask": self.attention_mask.to(device),
            "labels": self.labels.to(device),
        }
        if self.pixel_values is not None:
            inputs["pixel_values"] = self.pixel_values.to(device)
        if self.image_grids is not None:
            inputs["image_grids"] = self.image_grids.to(device)
        return inputs


@dataclass(frozen=True)
class TrainingCollator:
    """``list[Example | InvalidExample] -> TrainingBatch`` (right padding with ``pad_token_id``, labels -100)."""

    pad_token_id: int

    def __call__(self, examples: Sequence[Example | InvalidExample]) -> TrainingBatch:
        valid = [e for e in examples if isinstance(e, Example)]
        invalid = [e for e in examples if isinstance(e, InvalidExample)]
        if not valid:
            empty = torch.zeros((0, 0), dtype=torch.long)
            return TrainingBatch(empty, empty.clone(), empty.clone(), None, [], invalid)
        input_ids = pad_sequence([e.input_ids for e in valid], batch_first=True, padding_value=self.pad_token_id)
        labels = pad_sequence([e.labels for e in valid], batch_first=True, padding_value=IGNORE_INDEX)
        lengths = torch.tensor([len(e.input_ids) for e in valid])
        attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()  # (B, T)
        with_images = [e for e in valid if e.pixel_values is not None]
        pixel_values = image_grids = None
        if with_images:
            tiled = [e.image_grids is not None for e in with_images]
            if any(tiled) and not all(tiled):
                raise ValueError("a batch mixes dynamic-grid tiles and fixed-grid images; use one image processor")
            if all(tiled):
                pixel_values = pad_tiles([e.pixel_values for e in with_images])
                image_grids = torch.cat([e.image_grids for e in with_images])
            else:
                pixel_values = torch.cat([e.pixel_values for e in with_images])
        indices = [e.index for e in valid]
        return TrainingBatch(input_ids, labels, attention_mask, pixel_values, indices, invalid, image_grids)
