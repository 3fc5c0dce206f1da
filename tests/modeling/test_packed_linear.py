"""PackedLinear: the pre-packed oneDNN path gives nn.Linear's bits in CPU bf16 inference, is used only there, and
never serves a stale weight."""

import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch
from torch import nn

from inf_llava.modeling import packed_linear
from inf_llava.modeling.packed_linear import PackedLinear, use_packed_linears

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="this torch build has no oneDNN")


def _pair(in_features, out_features, bias=True, dtype=torch.bfloat16, seed=0):
    torch.manual_seed(seed)
    plain = nn.Linear(in_features, out_features, bias=bias).to(dtype)
    packed = use_packed_linears(nn.Sequential(copy.deepcopy(plain)))[0]
    return plain, packed


def _spy(monkeypatch):
    calls = []
    original = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(
        packed_linear.torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(1) or original(*a), raising=False
    )
    return calls


@pytest.mark.parametrize("shape", [(7, 64), (2, 37, 64), (3, 2, 5, 64), (1, 64)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("out_features", [48, 256])
def test_bit_identical_to_linear_in_bf16(monkeypatch, shape, bias, out_features):
    plain, packed = _pair(64, out_features, bias)
    calls = _spy(monkeypatch)
    x = torch.randn(*shape).to(torch.bfloat16)
    with torch.inference_mode():
        assert torch.equal(packed(x), plain(x))
        assert torch.equal(packed(x[: max(1, len(x) // 2)]), plain(x[: max(1, len(x) // 2)]))  # other row counts
    assert len(calls) == 2


def test_clip_l_mlp_shapes_are_bit_identical():
    for in_features, out_features in ((1024, 4096), (4096, 1024), (1024, 1024)):
        plain, packed = _pair(in_features, out_features)
        x = torch.randn(2, 577, in_features).to(torch.bfloat16)
        with torch.no_grad():
            assert torch.equal(packed(x), plain(x))


def test_plain_linear_wherever_the_packed_path_does_not_apply(monkeypatch):
    calls = _spy(monkeypatch)
    plain32, packed32 = _pair(16, 8, dtype=torch.float32)
    x32 = torch.randn(4, 16)
    with torch.no_grad():
        assert torch.equal(packed32(x32), plain32(x32))  # fp32
    plain, packed = _pair(16, 8)
    x = torch.randn(4, 16).to(torch.bfloat16)
    out = packed(x)  # gradients recorded: training
    out.float().sum().backward()
    plain(x).float().sum().backward()
    assert torch.equal(packed.weight.grad, plain.weight.grad)
    with torch.no_grad():
        packed(torch.randn(16, 4).to(torch.bfloat16).t())  # non-contiguous input
        packed(torch.randn(0, 16).to(torch.bfloat16))  # no rows
        with torch.autocast("cpu", dtype=torch.bfloat16):
            packed(torch.randn(4, 16))
    assert calls == []


def test_the_packed_copy_follows_weight_changes():
    plain, packed = _pair(32, 16)
    x = torch.randn(5, 32).to(torch.bfloat16)
    with torch.no_grad():
        packed(x)
        first = packed._packed
        packed(x)
        assert packed._packed is first  # reused while the weight is unchanged
        for layer in (plain, packed):
            layer.weight.mul_(-2)  # an in-place update (an optimizer step, load_state_dict)
        assert torch.equal(packed(x), plain(x))
        new = torch.randn(16, 32).to(torch.bfloat16)
        packed.weight = nn.Parameter(new.clone())
        plain.weight = nn.Parameter(new.clone())
        assert torch.equal(packed(x), plain(x))
        packed.load_state_dict(nn.Linear(32, 16).to(torch.bfloat16).state_dict())
        assert torch.equal(packed(x), nn.functional.linear(x, packed.weight, packed.bias))


def test_moves_copies_and_pickles_drop_the_packed_copy():
    _, packed = _pair(32, 16)
    x = torch.randn(5, 32).to(torch.bfloat16)
    with torch.no_grad():
        packed(x)
    assert packed._packed is not None
    clone = copy.deepcopy(packed)
    assert clone._packed is None and packed._packed is not None
    assert pickle.loads(pickle.dumps(packed))._packed is None
    packed.to(torch.float32)
    assert packed._packed is None
    with torch.no_grad():
        assert torch.equal(clone(x), pickle.loads(pickle.dumps(clone))(x))


def test_image_encoder_linears_are_packed_with_unchanged_names(tiny_model):
    encoder = tiny_model.model.image_encoder
    linears = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is PackedLinear for m in linears)
    assert "vision_tower.encoder.layers.0.mlp.fc1.weight" in dict(encoder.named_parameters())
    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    pixels = torch.randn(2, 3, 72, 72).to(torch.bfloat16)
    with torch.inference_mode():
        packed = model.get_image_features(pixels)
        packed_layers = sum(m._packed is not None for m in model.modules() if isinstance(m, PackedLinear))
        for m in model.model.image_encoder.modules():
            if type(m) is PackedLinear:
                m.__class__ = nn.Linear
        plain = model.get_image_features(pixels)
    assert packed_layers == len(linears)
    assert torch.equal(packed, plain)


def test_the_environment_can_turn_packing_off(monkeypatch):
    code = "from inf_llava.modeling import packed_linear as p; print(p._PACKING)"
    for value, expected in (("0", "False"), ("1", "True")):
        env = {**os.environ, "INF_LLAVA_PACKED_WEIGHTS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
    monkeypatch.setattr(packed_linear, "_PACKING", False)
    calls = _spy(monkeypatch)
    plain, packed = _pair(16, 8)
    with torch.no_grad():
        assert torch.equal(packed(torch.ones(2, 16).to(torch.bfloat16)), plain(torch.ones(2, 16).to(torch.bfloat16)))
    assert calls == [] and packed._packed is None


def test_restore_linears_undoes_the_swap():
    model = use_packed_linears(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))).to(torch.bfloat16)
    with torch.no_grad():
        model(torch.randn(2, 8).to(torch.bfloat16))
    packed = [model[0], model[2]]
    assert all(m._packed is not None for m in packed)
    packed_linear.restore_linears(model)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(m.__dict__.get("_packed") is None for m in packed)
