"""The tower's CPU half-precision attention backend: blocked over (batch, heads), bit-identical to the unblocked
official eager arithmetic, close to sdpa, and sdpa itself elsewhere."""

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from inf_llava.modeling import attention


def _official_eager(query, key, value, mask, scaling):
    """transformers 4.37 CLIP eager attention in the tensor dtype, unblocked: ``(B, H, L, D) -> (B, L, H, D)``."""
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if mask is not None:
        scores = scores + mask
    return torch.matmul(torch.softmax(scores, dim=-1), value).transpose(1, 2)


class _Bidirectional(torch.nn.Module):
    is_causal = False  # what the tower's attention modules say; sdpa_attention_forward assumes causal otherwise


def _qkv(batch, heads, length, dim, dtype=torch.bfloat16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    # (B, L, H, D) transposed, as the tower's projections hand them over: non-contiguous views
    return [torch.randn(batch, length, heads, dim, generator=generator).to(dtype).transpose(1, 2) for _ in range(3)]


@pytest.mark.parametrize("budget_heads", [1, 3, 4, 7, 12, 1000])  # within an item, uneven, whole items, one block
@pytest.mark.parametrize("mask_shape", [None, (1, 1), (3, 1), (3, 4)])
@pytest.mark.parametrize("scaling", [None, 0.3])  # 1/sqrt(16) = 1/4 is a power of two; 0.3 is not
def test_blocked_attention_is_bit_identical_to_unblocked(monkeypatch, budget_heads, mask_shape, scaling):
    B, H, L, D = 3, 4, 37, 16
    bytes_per_head = L * L * 2
    monkeypatch.setattr(attention, "SCORE_BLOCK_BYTES", budget_heads * bytes_per_head)
    q, k, v = _qkv(B, H, L, D)
    mask = None if mask_shape is None else torch.randn(*mask_shape, L, L).to(torch.bfloat16)
    got, weights = attention.attention_forward(None, q, k, v, mask, scaling=scaling)
    expected = _official_eager(q, k, v, mask, scaling or D**-0.5)
    assert weights is None
    assert got.shape == (B, L, H, D) and got.is_contiguous()
    assert torch.equal(got, expected)


@pytest.mark.parametrize("scaling", [None, 0.3])
def test_gradients_flow_and_equal_the_official_eager_ones(monkeypatch, scaling):
    monkeypatch.setattr(attention, "SCORE_BLOCK_BYTES", 37 * 37 * 2)  # would block per head without gradients
    leaves = [t.detach().requires_grad_() for t in _qkv(2, 4, 37, 16)]
    mask = torch.randn(2, 1, 37, 37).to(torch.bfloat16)
    got, _ = attention.attention_forward(None, *leaves, mask, scaling=scaling)
    grads = torch.autograd.grad(got.float().square().sum(), leaves)
    reference_leaves = [t.detach().requires_grad_() for t in leaves]
    expected = _official_eager(*reference_leaves, mask, scaling or 16**-0.5)
    expected_grads = torch.autograd.grad(expected.float().square().sum(), reference_leaves)
    assert torch.equal(got, expected)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        assert ((grad.float() - expected_grad.float()).abs().max() / expected_grad.float().abs().max()) < 2e-2


def test_score_blocks_cover_every_pair_once_within_budget():
    for batch, heads, budget in [(10, 16, 9), (10, 16, 16), (10, 16, 40), (3, 5, 1), (2, 4, 1000), (1, 16, 5)]:
        blocks = attention.score_blocks(batch, heads, bytes_per_head=100, budget=budget * 100)
        seen = [(b, h) for bs, hs in blocks for b in range(batch)[bs] for h in range(heads)[hs]]
        assert sorted(seen) == [(b, h) for b in range(batch) for h in range(heads)]
        assert all(len(range(batch)[bs]) * len(range(heads)[hs]) <= max(budget, 1) for bs, hs in blocks)
    # a head larger than the budget still gets a block of its own
    assert attention.score_blocks(2, 2, bytes_per_head=10**9, budget=1) == [
        (slice(0, 1), slice(0, 1)),
        (slice(0, 1), slice(1, 2)),
        (slice(1, 2), slice(0, 1)),
        (slice(1, 2), slice(1, 2)),
    ]


def test_clip_l_scores_are_blocked():
    """At the CLIP-L/14-336 shape (16 heads x 577 tokens, bf16) a block holds whole heads of one view, not 10 views."""
    blocks = attention.score_blocks(10, 16, bytes_per_head=577 * 577 * 2)
    assert 10 < len(blocks) <= 40


def test_half_precision_cpu_is_close_to_sdpa():
    q, k, v = _qkv(2, 4, 50, 16)
    ours, _ = attention.attention_forward(None, q, k, v, None)
    sdpa, _ = sdpa_attention_forward(_Bidirectional(), q, k, v, None)
    assert ours.shape == sdpa.shape
    assert ((ours.float() - sdpa.float()).abs().max() / sdpa.float().abs().max()).item() < 2e-2


def test_fp32_uses_sdpa():
    q, k, v = _qkv(2, 4, 50, 16, dtype=torch.float32)
    ours, _ = attention.attention_forward(_Bidirectional(), q, k, v, None)
    sdpa, _ = sdpa_attention_forward(_Bidirectional(), q, k, v, None)
    assert torch.equal(ours, sdpa)


def test_tower_in_bf16_uses_the_backend_and_matches_eager(monkeypatch):
    from inf_llava.modeling.vision_tower import build_vision_tower

    config = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=56, patch_size=14
    )
    torch.manual_seed(0)
    tower = build_vision_tower(config, 2).to(torch.bfloat16).eval()
    assert tower.config._attn_implementation == attention.NAME
    monkeypatch.setattr(attention, "SCORE_BLOCK_BYTES", 17 * 17 * 2 * 3)  # blocks of 3 heads
    calls = []
    original = attention.score_blocks
    monkeypatch.setattr(attention, "score_blocks", lambda *a: calls.append(original(*a)) or calls[-1])
    pixels = torch.randn(2, 3, 56, 56).to(torch.bfloat16)
    with torch.no_grad():
        ours = tower(pixel_values=pixels).last_hidden_state
    assert [len(blocks) for blocks in calls] == [2 * 2] * 2  # 2 layers of 2 images x 2 head blocks (3 + 1)
    eager = CLIPVisionModel(config).to(torch.bfloat16).eval()
    eager.load_state_dict(tower.state_dict())
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        reference = eager(pixel_values=pixels).last_hidden_state
    # transformers 5's eager softmax runs in fp32, the official 4.37 one in bf16: equal up to bf16 rounding
    assert ((ours.float() - reference.float()).abs().max() / reference.float().abs().max()).item() < 3e-2


def test_compiled_tower_keeps_the_blocked_attention_as_one_op():
    """Under torch.compile the blocked kernel is an opaque op in the traced graph (inductor can neither unroll its
    block loop nor swap in its slower CPU flash attention), and the traced tower computes what the eager one does."""
    from inf_llava.modeling.vision_tower import build_vision_tower

    config = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, image_size=56, patch_size=14
    )
    torch.manual_seed(0)
    tower = build_vision_tower(config, 2).to(torch.bfloat16).eval()
    targets = []

    def record(graph_module, example_inputs):
        targets.extend(node.target for node in graph_module.graph.nodes if node.op == "call_function")
        return graph_module.forward

    torch._dynamo.reset()
    compiled = torch.compile(lambda x: tower(pixel_values=x).last_hidden_state, backend=record, dynamic=False)
    pixels = torch.randn(2, 3, 56, 56).to(torch.bfloat16)
    with torch.inference_mode():
        expected = tower(pixel_values=pixels).last_hidden_state
        got = compiled(pixels)
    torch._dynamo.reset()
    assert targets.count(torch.ops.inf_llava.blocked_attention.default) == 2  # one per layer
    assert torch.bmm not in targets and torch.softmax not in targets
    assert torch.equal(got, expected)
