"""Supervised pretraining of the image side (vision tower + DEM + projector) on the synthetic scenes' attributes.

Trained from scratch on CPU, a small INF-LLaVA learns to read its image tokens slowly: the LLM must discover the
image and the tower must discover what matters at the same time (600 steps of the plain recipe left the wide/tall task
at chance). This stage gives the image side its own dense objective first, the analogue of the paper's stage 1
(align DEM + projector before the LLM is tuned): from the image tokens the LLM would receive, attention-pooling heads
predict, for each quadrant, what is there (the shape's colour and kind, or none; the box's colour, or none). The
heads are thrown away afterwards; stage 2 (:func:`inf_llava.training.train`, ``finetune``) then trains the DEM,
projector and LLM on the questions with the tower frozen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .scenes import COLORS, QUADRANTS, SHAPES

SHAPE_CLASSES = ("none", *(f"{color} {kind}" for color in sorted(COLORS) for kind in SHAPES))
BOX_CLASSES = ("none", *sorted(COLORS))
SLOTS = tuple((quadrant, slot) for quadrant in QUADRANTS for slot in ("shape", "box"))


def scene_labels(scene: dict) -> list[int]:
    """The class index of every slot (quadrant x {shape, box}) of a scene record (``record["scene"]``)."""
    shapes = {s["quadrant"]: f"{s['color']} {s['kind']}" for s in scene["shapes"]}
    boxes = {b["quadrant"]: b["color"] for b in scene["boxes"]}
    labels = []
    for quadrant, slot in SLOTS:
        if slot == "shape":
            labels.append(SHAPE_CLASSES.index(shapes.get(quadrant, "none")))
        else:
            labels.append(BOX_CLASSES.index(boxes.get(quadrant, "none")))
    return labels


class AttributeHeads(nn.Module):
    """A linear read-out of every slot from the whole (layer-normed) token sequence: position-aware, as the LLM's
    view of the tokens is (attention pooling without positions cannot tell the quadrants apart)."""

    def __init__(self, tokens: int, width: int, sizes: Sequence[int] | None = None):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.sizes = list(sizes) if sizes is not None else slot_sizes()
        self.readout = nn.Linear(tokens * width, sum(self.sizes))

    def forward(self, tokens: torch.Tensor) -> list[torch.Tensor]:
        logits = self.readout(self.norm(tokens).flatten(1))
        return list(logits.split(self.sizes, dim=1))


def slot_sizes() -> list[int]:
    """The number of classes of every slot of the base scenes (:data:`SLOTS`)."""
    return [len(SHAPE_CLASSES) if slot == "shape" else len(BOX_CLASSES) for _, slot in SLOTS]


def image_side_parameters(model: nn.Module, include_tower: bool = True) -> list[nn.Parameter]:
    """Everything but the language model (tower, feature norm, DEM, projector); without the tower if
    ``include_tower`` is False."""
    from ..training.stages import module_group

    skip = {None, "language_model"} if include_tower else {None, "language_model", "vision_tower"}
    return [p for name, p in model.named_parameters() if module_group(name) not in skip]


def pretrain_image_side(
    model: nn.Module,
    inputs: dict[str, torch.Tensor],
    labels: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    warmup_ratio: float = 0.05,
    log_every: int = 25,
    sizes: Sequence[int] | None = None,
    train_tower: bool = True,
) -> list[list[float]]:
    """Train the image side of ``model`` in place on preprocessed ``inputs`` (``pixel_values`` and, for dynamic
    grids, ``image_grids``, one row per image) against ``labels`` ``(N, slots)`` (``sizes``: classes per slot, the
    base scenes' :data:`SLOTS` by default; ``train_tower=False`` keeps the vision tower frozen, as the paper's stage 1
    does); returns the loss curve ``[[step, mean loss], ...]``."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    heads = AttributeHeads(model.config.geometry.tokens_per_image, model.config.text_config.hidden_size, sizes)
    if not train_tower:
        model.model.image_encoder.vision_tower.requires_grad_(False)
    params = image_side_parameters(model, include_tower=train_tower) + list(heads.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(steps, warmup_ratio))
    model.train()
    count = labels.shape[0]
    curve, window = [], []
    for step in range(1, steps + 1):
        index = torch.randint(0, count, (batch_size,), generator=generator)
        batch = {key: value[index] for key, value in inputs.items()}
        tokens = model.get_image_features(batch["pixel_values"], batch.get("image_grids"))
        logits = heads(tokens)
        loss = sum(F.cross_entropy(out, labels[index, i]) for i, out in enumerate(logits)) / len(logits)
        window.append(optimizer_step(loss, optimizer, scheduler, params))
        if step % log_every == 0 or step == steps:
            curve.append([step, sum(window) / len(window)])
            window = []
    model.eval()
    return curve


def cosine_with_warmup(steps: int, warmup_ratio: float):
    """The LR factor of step ``i``: linear warm-up over ``warmup_ratio`` of ``steps``, then cosine decay to 0."""
    warmup = max(1, int(steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def optimizer_step(loss: torch.Tensor, optimizer, scheduler, params) -> float:
    """Backward, clip to norm 1, step the optimizer and the schedule; returns the loss value."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


def preprocess_all(processor, images: Sequence) -> dict[str, torch.Tensor]:
    """Every image through the model's processor once (fixed grids: ``(N, 3, H, W)``; dynamic: tiles + grids)."""
    out = processor.image_processor(list(images), return_tensors="pt")
    return {key: value for key, value in out.items() if key in ("pixel_values", "image_grids")}
