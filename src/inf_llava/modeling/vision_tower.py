"""The vision tower, built only up to the selected layer, and patch-feature selection.

Any HF vision model whose config has ``image_size``/``patch_size`` works (CLIP, SigLIP, ...). The official code runs the
full 24-layer CLIP with every hidden state kept and takes ``hidden_states[-2]``; building the tower with only the
layers that feed that output gives the same features without the unused last layer (spec section 4, step 6).
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

from ..compat import LAST_HIDDEN_STATE


def truncated_vision_config(vision_config: PretrainedConfig, num_layers: int) -> PretrainedConfig:
    """A copy of ``vision_config`` with ``num_hidden_layers = num_layers``."""
    config = copy.deepcopy(vision_config)
    config.num_hidden_layers = num_layers
    return config


def build_vision_tower(vision_config: PretrainedConfig, num_layers: int) -> PreTrainedModel:
    """The tower with ``num_layers`` layers. Its attention runs through :mod:`.attention` (``sdpa``, except half
    precision on CPU) unless an implementation other than the default was requested."""
    from . import attention

    tower = AutoModel.from_config(truncated_vision_config(vision_config, num_layers))
    if tower.config._attn_implementation in (None, "sdpa"):
        attention.register()
        tower.set_attn_implementation(attention.NAME)
    return tower


def patch_features(tower: PreTrainedModel, pixel_values: torch.Tensor, tokens_per_view: int) -> torch.Tensor:
    """``(N, C, S, S) -> (N, T, D)``: the last built layer's output (before any post-LayerNorm), patch tokens only.

    Leading non-patch tokens (a class token, registers) are dropped so that exactly ``T = p * p`` tokens remain.
    """
    dtype = next(tower.parameters()).dtype
    out = tower(pixel_values=pixel_values.to(dtype), output_hidden_states=LAST_HIDDEN_STATE, return_dict=True)
    hidden = out.hidden_states[-1]  # (N, extra + T, D), pre-post-LayerNorm
    extra = hidden.shape[1] - tokens_per_view
    if extra < 0:
        raise ValueError(
            f"the vision tower returned {hidden.shape[1]} tokens per view, fewer than the {tokens_per_view} patches "
            "the geometry expects"
        )
    return hidden[:, extra:]
