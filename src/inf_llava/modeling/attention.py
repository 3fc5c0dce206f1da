"""The vision tower's attention backend: ``sdpa`` everywhere except half precision on CPU.

PyTorch's CPU flash-attention kernel does not use the AMX / AVX512-BF16 matrix units for bf16, so there it runs at
a sixth of the GEMM rate; two bf16 matmuls with a softmax in between are about 1.9x faster for CLIP's shapes. That is
also exactly the official code's bf16 arithmetic (transformers 4.37 CLIP eager attention: scores, softmax and weighted
sum in the tensor dtype). When the scale is a power of two (head dim 64: 1/8) it is applied to the queries before the
first matmul, which is bit-identical (scaling by a power of two commutes with rounding) and touches far fewer
elements than scaling the ``L x L`` scores. Registered with transformers' ``AttentionInterface`` under
:data:`NAME`; the image encoder selects it for its tower unless another implementation was requested.
"""

from __future__ import annotations

import math

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "inf_llava"


def attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """``(B, H, L, Dh)`` query/key/value -> ``((B, L, H, Dh) output, weights or None)``."""
    if query.device.type != "cpu" or query.dtype not in (torch.bfloat16, torch.float16) or dropout:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    if math.frexp(scaling)[0] == 0.5:  # a power of two: exact either way, cheaper on the queries
        scores = torch.matmul(query * scaling, key.transpose(2, 3))
    else:
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def register() -> None:
    AttentionInterface.register(NAME, attention_forward)
