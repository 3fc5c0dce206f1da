"""The two INF-LLaVA training stages as data: which modules train, the default template and learning rate.

Spec 13.1-13.4: stage 1 (``pretrain``) trains the projector and the DEM on captions with the ``plain`` template at
lr 1e-3; stage 2 (``finetune``) also trains the whole LLM (embeddings and ``lm_head`` included) at lr 2e-5 with the
chat template. Stage 1 resizes and centre-crops images (``image_aspect_ratio`` "square", the default of its script),
stage 2 pads them to a square first ("pad"). The vision tower stays frozen in both unless explicitly unfrozen. With
LoRA, the LLM's own weights stay frozen and only its LoRA matrices train (the DEM and projector still train in full).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from torch import nn

# Parameter-name prefixes of each module group in InfLlavaForConditionalGeneration.
MODULE_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "vision_tower": ("model.image_encoder.vision_tower.",),
        "dem": ("model.image_encoder.dem.",),
        # the optional feature LayerNorm (config.vision_feature_norm) is part of the connector
        "projector": ("model.image_encoder.projector.", "model.image_encoder.feature_norm."),
        "language_model": ("model.language_model.", "lm_head."),
    }
)
LORA_MARKER = ".lora_"


@dataclass(frozen=True)
class StagePolicy:
    """One training stage.

    Attributes:
        name: ``pretrain`` or ``finetune``.
        trainable: module groups (keys of :data:`MODULE_GROUPS`) whose weights train.
        template: default training template (None: the processor's chat template).
        lr: default peak learning rate (official scripts).
        export_adapter: also write the official stage-1 ``mm_projector.bin``.
        image_aspect_ratio: training preprocessing: ``"square"`` (resize + centre crop; official stage 1) or
            ``"pad"`` (pad to square with the mean colour first; official stage 2).
    """

    name: str
    trainable: tuple[str, ...]
    template: str | None
    lr: float
    export_adapter: bool
    image_aspect_ratio: str
    description: str


STAGES: Mapping[str, StagePolicy] = MappingProxyType(
    {
        "pretrain": StagePolicy(
            "pretrain",
            ("dem", "projector"),
            "plain",
            1e-3,
            True,
            "square",
            "stage 1: align DEM + projector on captions",
        ),
        "finetune": StagePolicy(
            "finetune",
            ("dem", "projector", "language_model"),
            None,
            2e-5,
            False,
            "pad",
            "stage 2: instruction tuning of DEM + projector + LLM",
        ),
    }
)


def get_stage(name: str) -> StagePolicy:
    try:
        return STAGES[name]
    except KeyError:
        raise ValueError(f"unknown stage {name!r}; choose {' or '.join(STAGES)}") from None


def module_group(parameter_name: str) -> str | None:
    """The module group a parameter belongs to (None for anything outside the four groups)."""
    for group, prefixes in MODULE_GROUPS.items():
        if parameter_name.startswith(prefixes):
            return group
    return None


def apply_stage(
    model: nn.Module, stage: StagePolicy, *, unfreeze_vision_tower: bool = False, lora: bool = False
) -> dict[str, int]:
    """Set ``requires_grad`` for ``stage`` and return the number of trainable parameters per group.

    With ``lora`` the LLM trains only through its LoRA matrices (parameter names containing ``.lora_``), which
    :func:`~inf_llava.training.lora.apply_lora` places on the LLM alone. Raises ValueError when nothing would train.
    """
    groups = set(stage.trainable)
    if unfreeze_vision_tower:
        groups.add("vision_tower")
    if lora and "language_model" not in groups:
        raise ValueError(f"--lora adapts the LLM, which the {stage.name} stage keeps frozen; use --stage finetune")
    counts = dict.fromkeys(MODULE_GROUPS, 0)
    for name, param in model.named_parameters():
        group = module_group(name)
        if LORA_MARKER in name:
            train = group == "language_model" and "language_model" in groups
        elif group == "language_model" and lora:
            train = False
        else:
            train = group in groups
        param.requires_grad_(train)
        if train:
            counts[group] += param.numel()
    if not any(counts.values()):
        raise ValueError(f"the {stage.name} stage found no trainable parameters in this model")
    return counts
