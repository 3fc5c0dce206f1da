"""The batched DEM against a per-window loop written from the spec (tests/reference/official_dem.py)."""

import pytest
import torch
import torch.nn.functional as F
from reference.official_dem import SpatialEmbed, to_package_state_dict

from inf_llava import DualPerspectiveEnhancement
from inf_llava.modeling.enhancement import WindowCrossAttention


def _pair(dim, heads, seed=0):
    torch.manual_seed(seed)
    ref = SpatialEmbed(dim, heads).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(0.0, 0.05)
    return ref


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


SHAPES = [(64, 4, 3, 6), (32, 2, 1, 4), (48, 6, 5, 10), (64, 8, 3, 5), (32, 4, 2, 4)]


@pytest.mark.parametrize(
    "dim,heads,n,p,impl",
    [(1024, 8, 3, 24, "sdpa")] + [(*shape, impl) for shape in SHAPES for impl in ("sdpa", "eager")],
)
def test_batched_dem_equals_per_window_loop(dim, heads, n, p, impl):
    ref = _pair(dim, heads)
    dem = DualPerspectiveEnhancement(dim, n, heads, attn_implementation=impl).eval()
    dem.load_state_dict(to_package_state_dict(ref.state_dict()))
    feats = [torch.randn(2, p * p, dim) for _ in range(2 * n * n)]
    local, strided = torch.stack(feats[: n * n], 1), torch.stack(feats[n * n :], 1)
    with torch.no_grad():
        expected = ref(feats, n)
        fast = dem(local, strided)
        full = dem(local, strided, full=True)
    assert fast.shape == (2, p * p, dim)
    assert _rel(fast, expected) < 1e-5
    assert _rel(full, expected) < 1e-5


def test_centre_only_path_is_used_and_exact_at_official_shape():
    # 3x3 grid, p = 24: bilinear 72 -> 24 picks [1::3, 1::3], so only those rows are computed.
    ref = _pair(1024, 8, seed=1)
    dem = DualPerspectiveEnhancement(1024, 3, 8).eval()
    dem.load_state_dict(to_package_state_dict(ref.state_dict()))
    calls = []
    hook = dem.attention.register_forward_hook(lambda m, i, o: calls.append(tuple(i[0].shape)))
    feats = [torch.randn(1, 576, 1024) for _ in range(18)]
    with torch.no_grad():
        out = dem(torch.stack(feats[:9], 1), torch.stack(feats[9:], 1))
        expected = ref(feats, 3)
    hook.remove()
    assert calls == [(9, 64, 1024), (1, 576, 1024)]  # 9 windows x 64 picked queries; one phase of 576
    assert _rel(out, expected) < 1e-5


def test_bilinear_pool_is_centre_pick():
    x = torch.randn(2, 7, 72, 72)
    picked = F.interpolate(x, size=(24, 24), mode="bilinear", align_corners=False)
    assert torch.equal(picked, x[:, :, 1::3, 1::3])


def test_average_pooling_variant():
    torch.manual_seed(0)
    dem = DualPerspectiveEnhancement(32, 3, 4, pooling="avg").eval()
    local, strided = torch.randn(1, 9, 36, 32), torch.randn(1, 9, 36, 32)
    with torch.no_grad():
        fuse, _ = dem._full_map(local, strided, 6, return_weights=False)  # (1, 18, 18, 32)
        out = dem(local, strided)
    expected = fuse.reshape(1, 6, 3, 6, 3, 32).mean(dim=(2, 4)).reshape(1, 36, 32)
    assert torch.allclose(out, expected, atol=1e-6)


def test_attention_is_shared_and_official_residual_and_norm():
    torch.manual_seed(0)
    attn = WindowCrossAttention(16, 2, attn_implementation="eager")
    q, kv = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    out, weights = attn(q, kv, return_weights=True)
    Q = attn.q_proj(q).view(3, 5, 2, 8).transpose(1, 2)
    K = attn.k_proj(kv).view(3, 7, 2, 8).transpose(1, 2)
    V = attn.v_proj(kv).view(3, 7, 2, 8).transpose(1, 2)
    p = torch.softmax(Q @ K.transpose(-1, -2) / 8**0.5, -1)
    x = (p @ V).transpose(1, 2).reshape(3, 5, 16)
    assert torch.allclose(out, attn.norm(attn.o_proj(x) + q), atol=1e-6)
    assert weights.shape == (3, 2, 5, 7)
    dem = DualPerspectiveEnhancement(16, 3, 2)
    assert sum(isinstance(m, WindowCrossAttention) for m in dem.modules()) == 1


def test_parameter_count_and_official_initialisation():
    dem = DualPerspectiveEnhancement(1024, 3, 8)
    assert sum(p.numel() for p in dem.parameters()) == 4_400_256  # spec 5.2
    a = dem.attention
    assert all(torch.equal(a.q_proj.weight, m.weight) for m in (a.k_proj, a.v_proj, a.o_proj))


def test_attention_maps_and_gradients():
    torch.manual_seed(0)
    dem = DualPerspectiveEnhancement(32, 3, 4)
    local = torch.randn(2, 9, 36, 32, requires_grad=True)
    strided = torch.randn(2, 9, 36, 32, requires_grad=True)
    dem(local, strided).sum().backward()
    assert local.grad.abs().sum() > 0 and strided.grad.abs().sum() > 0
    assert all(p.grad is not None for p in dem.parameters())
    maps = dem.attention_maps(local.detach(), strided.detach())
    assert maps.global_query.shape == (2, 9, 4, 36, 36)
    assert torch.allclose(maps.local_query.sum(-1), torch.ones(2, 9, 4, 36))


def test_shape_errors():
    dem = DualPerspectiveEnhancement(32, 3, 4)
    with pytest.raises(ValueError, match="expects 9 sub-images"):
        dem(torch.randn(1, 4, 36, 32), torch.randn(1, 4, 36, 32))
    with pytest.raises(ValueError, match="square token grid"):
        dem(torch.randn(1, 9, 35, 32), torch.randn(1, 9, 35, 32))
