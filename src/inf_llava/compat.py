"""What differs between the supported transformers releases (5.18 and newer; vLLM 0.32 pins ``<5.20``; 5.16 and 5.17
need torchvision to register an image processor, which does not import beside the CPU torch here).

- 5.20 renamed the KV-cache argument and output field of every model from ``past_key_values`` to ``cache``
  (:data:`CACHE_NAME` is the name this release uses; generation reads the cache back under that name).
- 5.20 added ``modeling_utils.slice_logits_to_keep`` (before, each model sliced inline): :func:`slice_logits_to_keep`.
- 5.20 lets ``output_hidden_states`` select layers by index, keeping only those (:data:`LAST_HIDDEN_STATE`: the
  argument that returns the last layer's output; before 5.20 every layer's output is returned).
- 5.20 added ``configuration_utils.SubConfigSpec`` (see :mod:`inf_llava.configuration`, which resolves its sub-configs
  itself on every release).
"""

from __future__ import annotations

import torch
from transformers.generation.utils import ALL_CACHE_NAMES

# "cache" from transformers 5.20 on, "past_key_values" before.
CACHE_NAME: str = ALL_CACHE_NAMES[0]

try:
    from transformers.utils.output_capturing import selected_hidden_states  # noqa: F401 - only probed

    LAST_HIDDEN_STATE: bool | list[int] = [-1]
except ImportError:  # transformers < 5.20: all hidden states (the last one is the same tensor)
    LAST_HIDDEN_STATE = True

try:
    from transformers.modeling_utils import slice_logits_to_keep
except ImportError:  # transformers < 5.20

    def slice_logits_to_keep(hidden_states: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
        """The last ``logits_to_keep`` positions (0: all), or the positions a 1D index tensor names."""
        if isinstance(logits_to_keep, int):
            return hidden_states[:, -logits_to_keep:, :] if logits_to_keep else hidden_states
        return hidden_states[:, logits_to_keep, :]


def pop_cache_argument(cache, kwargs: dict):
    """The KV cache passed to a forward under either name (``cache=`` or, from older generation code or callers,
    ``past_key_values=``); the other name is removed from ``kwargs``."""
    legacy = kwargs.pop("past_key_values", None)
    if cache is not None and legacy is not None and cache is not legacy:
        raise ValueError("pass the KV cache once, as cache= (past_key_values= is its former name)")
    return cache if cache is not None else legacy


__all__ = ["CACHE_NAME", "LAST_HIDDEN_STATE", "pop_cache_argument", "slice_logits_to_keep"]
