"""Optimizer and learning-rate schedule (spec 13.3): torch AdamW over the trainable parameters in two groups,
weight decay on weights and none on biases and normalisation parameters; warmup then cosine (or another HF schedule).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import get_scheduler

SCHEDULES = ("cosine", "linear", "constant_with_warmup")


def no_decay_parameter_names(model: nn.Module) -> set[str]:
    """Biases and the parameters of normalisation layers (LayerNorm, RMSNorm of any LM, ...)."""
    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or "norm" in type(module).__name__.lower()
        for param_name, _ in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if is_norm or param_name == "bias":
                names.add(full)
    return names


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups of the trainable parameters: with and without weight decay (empty groups left out)."""
    skip = no_decay_parameter_names(model)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    groups = parameter_groups(model, weight_decay)
    if not groups:
        raise ValueError("no trainable parameters to optimise")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """Warmup length as HF computes it from a ratio: ``ceil(ratio * total)``."""
    if not 0 <= warmup_ratio <= 1:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    return math.ceil(warmup_ratio * total_steps)


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, warmup_ratio: float, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-optimizer-step schedule from transformers (``cosine``: linear warmup, then cosine decay to 0)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler {name!r}; choose one of {', '.join(SCHEDULES)}")
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=warmup_steps(warmup_ratio, total_steps),
        num_training_steps=total_steps,
    )
