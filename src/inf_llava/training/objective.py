"""The training objective as one module, so DDP / FSDP / DeepSpeed wrap a single forward that returns the loss.

``forward`` returns the *summed* next-token cross-entropy over supervised tokens; the trainer divides by the number
of supervised tokens in the whole global batch (all processes, all accumulation steps). Every token then weighs the
same whatever the padding, the split over processes or the accumulation, so 2 processes x batch 2 give the same
update as 1 process x batch 4.

Only hidden states at supervised positions go through ``lm_head`` (image slots, system and user text never become
``(T, vocab)`` logits), which saves most of the logits memory at a 128k vocabulary.

A micro-batch without images still runs the image encoder on one blank image and adds ``0 x`` its output, so the
trainable DEM / projector take part in every backward pass: without it a text-only micro-batch in stage 1 has no
gradient at all, and under DDP the processes would disagree on which parameters were used (official LLaVA feeds a
zero image to text-only samples for the same reason).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..processing.tokenization import IGNORE_INDEX


class CausalLMObjective(nn.Module):
    """Wraps an :class:`~inf_llava.InfLlavaForConditionalGeneration` (LoRA layers may be injected into it).

    Args:
        model: the model to train.
        blank_image_size: ``(H, W)`` of the processor's ``pixel_values``, for the blank image of text-only batches
            (default: the model's high-resolution size; for dynamic grids, the canvas of its first candidate grid).
    """

    def __init__(self, model: nn.Module, blank_image_size: tuple[int, int] | None = None):
        super().__init__()
        self.model = model
        if blank_image_size is None:
            geometry = model.config.geometry
            blank_image_size = geometry.for_grid(geometry.grids[0]).high_res_size
        self.blank_image_size = tuple(blank_image_size)
        # Decided once, after the stage policy has set requires_grad (wrappers may flatten parameters later).
        self.image_path_trainable = any(p.requires_grad for p in model.model.image_encoder.parameters())

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_grids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, T)`` ids / mask / labels and ``(N, 3, H, W)`` pixels (or dynamic-grid tiles with ``image_grids``) ->
        summed loss (a scalar)."""
        outputs = self.model.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            image_grids=image_grids,
            attention_mask=attention_mask,
            use_cache=False,
        )
        hidden = outputs.last_hidden_state[:, :-1]  # (B, T-1, H): position t predicts token t+1
        targets = labels[:, 1:].to(hidden.device)
        keep = targets != IGNORE_INDEX
        logits = self.model.lm_head(hidden[keep])  # (n_supervised, V)
        loss = F.cross_entropy(logits.float(), targets[keep], reduction="sum")
        if pixel_values is None and self.image_path_trainable:
            blank = torch.zeros((1, 3, *self.blank_image_size), device=hidden.device)
            loss = loss + 0.0 * self.model.model.get_image_features(blank).sum()
        return loss
