"""The vision tower's attention backend: ``sdpa`` everywhere except half precision on CPU.

PyTorch's CPU flash-attention kernel does not use the AVX512-BF16 / AMX matrix units for bf16, so there two bf16
matmuls with a softmax in between are faster for CLIP's shapes. That is also exactly the official code's bf16
arithmetic (transformers 4.37 CLIP eager attention: scores, softmax and weighted sum in the tensor dtype).

Two details make that path run near the matmul rate instead of at memory speed:

- the ``(batch, heads)`` pairs are processed in blocks whose ``L x L`` scores fit in :data:`SCORE_BLOCK_BYTES`, so
  the scores are written, softmaxed and read back from cache instead of main memory (``heads x L x L`` scores per
  view, ``L = tokens_per_view + 1``: about 10 MB in bf16 for the released model's tower, times the number of views
  for an image). Every block computes exactly what the unblocked matmuls compute for its rows, so the result is
  bit-identical (tested on both CPU kinds this project runs on, AVX512-BF16 AMD EPYC and Intel AMX: a block is a
  batch slice of the same per-head products, whose accumulation order oneDNN does not change with the batch count);
- when the scale is a power of two (``head_dim ** -0.5`` for head dims 4, 16, 64, ...) it is applied to the queries
  before the first matmul, which is also bit-identical (scaling by a power of two commutes with rounding) and touches
  far fewer elements than scaling the scores.

The blocks write into preallocated buffers, which autograd cannot follow, so when gradients flow (training the
tower in half precision on CPU) the same arithmetic runs unblocked. Like ``sdpa``, this backend does not return
attention weights. Registered with transformers' ``AttentionInterface``
under :data:`NAME`; the image encoder selects it for its tower unless another implementation was requested.
"""

from __future__ import annotations

import math

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

NAME = "inf_llava"

# Scores per block. On the 2-core AVX512-BF16 machine of docs/performance.md (2 MB L2 per core, 32 MB L3) 4-8 MB
# blocks were fastest: 16 % faster than unblocked scores for CLIP-L attention, 4 % for a whole tower layer.
SCORE_BLOCK_BYTES = 6 << 20


def attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """``(B, H, L, Dh)`` query/key/value -> ``((B, L, H, Dh) output, None)``."""
    if query.device.type != "cpu" or query.dtype not in (torch.bfloat16, torch.float16) or dropout:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    if scaling is None:
        scaling = query.shape[-1] ** -0.5
    scale_queries = math.frexp(scaling)[0] == 0.5  # a power of two: exact either way, cheaper on the queries
    if torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value)):
        return _unblocked(query, key, value, attention_mask, scaling, scale_queries), None
    return blocked_attention(query, key, value, attention_mask, scaling), None


@torch.library.custom_op("inf_llava::blocked_attention", mutates_args=())
def blocked_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, attention_mask: torch.Tensor | None, scaling: float
) -> torch.Tensor:
    """The blocked inference path, ``(B, H, L, Dh) -> (B, L, H, Dh)``. A custom op, so that ``torch.compile`` keeps it
    as one opaque call (inductor would otherwise trace the block loop, or replace the pattern with its CPU
    flash-attention kernel, which is several times slower in bf16 here) and compiles everything around it."""
    scale_queries = math.frexp(scaling)[0] == 0.5
    # (B, H, L, Dh) in memory, so that every block below is a contiguous slice that bmm reads and writes in place
    if scale_queries:  # scaled straight into a contiguous buffer: one pass over the queries instead of two
        query = torch.mul(query, scaling, out=query.new_empty(query.shape))
    else:
        query = query.contiguous()
    key, value = key.contiguous(), value.contiguous()
    B, H, L, _ = query.shape
    Lk = key.shape[2]
    out = query.new_empty(B, H, L, value.shape[-1])
    blocks = score_blocks(B, H, L * Lk * query.element_size())
    buffer = query.new_empty(max(len(range(B)[b]) * len(range(H)[h]) for b, h in blocks), L, Lk)  # reused per block
    for b, h in blocks:
        n_b, n_h = query[b, h].shape[:2]
        n = n_b * n_h
        scores = torch.bmm(query[b, h].view(n, L, -1), key[b, h].view(n, Lk, -1).transpose(1, 2), out=buffer[:n])
        if not scale_queries:
            scores = scores * scaling
        if attention_mask is not None:
            scores = (scores.view(n_b, n_h, L, Lk) + _mask_block(attention_mask, b, h)).view(n, L, Lk)
        torch.bmm(torch.softmax(scores, dim=-1), value[b, h].view(n, Lk, -1), out=out[b, h].view(n, L, -1))
    return out.transpose(1, 2).contiguous()


@blocked_attention.register_fake
def _(query, key, value, attention_mask, scaling):
    B, H, L, _ = query.shape
    return query.new_empty(B, L, H, value.shape[-1])


def _unblocked(query, key, value, mask, scaling: float, scale_queries: bool) -> torch.Tensor:
    """The same arithmetic in one piece, differentiable: ``(B, H, L, Dh) -> (B, L, H, Dh)``."""
    if scale_queries:
        scores = torch.matmul(query * scaling, key.transpose(2, 3))
    else:
        scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), value).transpose(1, 2).contiguous()


def score_blocks(batch: int, heads: int, bytes_per_head: int, budget: int | None = None):
    """``(batch slice, head slice)`` pairs covering ``batch x heads`` whose scores take at most ``budget`` bytes
    (default :data:`SCORE_BLOCK_BYTES`; at least one head each): whole batch items where one fits, else groups of
    heads within an item."""
    budget = SCORE_BLOCK_BYTES if budget is None else budget
    per_block = max(1, budget // max(1, bytes_per_head))
    if per_block >= heads:
        items = per_block // heads
        return [(slice(b, min(b + items, batch)), slice(None)) for b in range(0, batch, items)]
    return [
        (slice(b, b + 1), slice(h, min(h + per_block, heads))) for b in range(batch) for h in range(0, heads, per_block)
    ]


def _mask_block(mask: torch.Tensor, b: slice, h: slice) -> torch.Tensor:
    """The part of a broadcastable ``(B or 1, H or 1, L, L)`` mask that a block sees."""
    return mask[b if mask.shape[0] != 1 else slice(None), h if mask.shape[1] != 1 else slice(None)]


def register() -> None:
    AttentionInterface.register(NAME, attention_forward)
