"""PackedLinear: on any CPU it returns nn.Linear's bits (the packed oneDNN kernel is used only where verified to
give them), it is used only in CPU bf16 inference, it never serves a stale weight, and the packed kernel itself
stays within fp32 accumulation error of F.linear. Which shapes verify exact depends on the CPU (oneDNN's kernels):
tests of the mechanism use a stand-in kernel whose exactness they control; tests on the real kernel assert what
must hold whatever it picks, and the one per-CPU claim (exact on AVX512-BF16 CPUs without AMX) is checked where it
applies."""

import copy
import logging
import os
import pickle
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from inf_llava.modeling import packed_linear
from inf_llava.modeling.packed_linear import EXACTNESS, PackedLinear, use_packed_linears
from inf_llava.runtime import cpu_matrix_isa

pytestmark = pytest.mark.skipif(not packed_linear.available(), reason="this torch build has no oneDNN")

CLIP_L_SHAPES = ((1024, 4096), (4096, 1024), (1024, 1024))


@pytest.fixture(autouse=True)
def fresh_verdicts():
    EXACTNESS.clear()
    yield
    EXACTNESS.clear()


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


def _stand_in_kernel(monkeypatch, perturb=lambda call, x, out: out):
    """Replace oneDNN's packing and linear by F.linear on the unpacked weight (exact by construction), with
    ``perturb(call_number, input, output)`` applied to each output; returns the list of calls."""
    calls = []
    monkeypatch.setattr(packed_linear.torch.ops.mkldnn, "_reorder_linear_weight", lambda w, rows: w.clone())

    def linear(x, w, b, *rest):
        calls.append(x.shape)
        return perturb(len(calls), x, F.linear(x, w, b))

    monkeypatch.setattr(packed_linear.torch.ops.mkldnn, "_linear_pointwise", linear)
    return calls


def _slightly_off(out):
    """``out`` with its first element moved by a few bf16 ulps."""
    out = out.clone()
    out.view(-1)[0] += out.view(-1)[0].abs() * 2**-5 + 2**-5
    return out


@pytest.mark.parametrize("shape", [(7, 64), (2, 37, 64), (3, 2, 5, 64), (1, 64)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("out_features", [48, 256])
def test_returns_linear_bits_on_any_cpu(shape, bias, out_features):
    plain, packed = _pair(64, out_features, bias)
    x = torch.randn(*shape).to(torch.bfloat16)
    with torch.inference_mode():
        for _ in range(2):  # the first call verifies, the second takes whichever path the verdict chose
            assert torch.equal(packed(x), plain(x))
            half = x[: max(1, len(x) // 2)]  # another row count: verified on its own
            assert torch.equal(packed(half), plain(half))
    report = packed_linear.exactness_report()
    name = f"64->{out_features}" + ("" if bias else " no bias")
    assert report["unsupported"] or name in report["exact"] or name in report["inexact"]  # a verdict was reached


def test_clip_l_shapes_return_linear_bits_and_the_verdict_tells_the_truth():
    """At the tower's GEMM shapes: the layer's output is nn.Linear's whatever the CPU, and the recorded verdict
    agrees with a direct comparison of the raw kernel on a fresh input."""
    for in_features, out_features in CLIP_L_SHAPES:
        plain, packed = _pair(in_features, out_features)
        x = torch.randn(2, 577, in_features).to(torch.bfloat16)
        with torch.no_grad():
            assert torch.equal(packed(x), plain(x))
            assert torch.equal(packed(x), plain(x))
            verdict = EXACTNESS.verdict((in_features, out_features, True), 2 * 577)
            fresh = torch.randn(2, 577, in_features).to(torch.bfloat16)
            try:
                weight = torch.ops.mkldnn._reorder_linear_weight(plain.weight, 2 * 577)
                raw = torch.ops.mkldnn._linear_pointwise(fresh, weight, plain.bias, "none", [], "")
            except RuntimeError:
                assert verdict is False  # no kernel on this CPU: never used
                continue
        if not torch.equal(raw, plain(fresh)):
            assert verdict is False, "the packed kernel differs here but was marked exact"
        assert verdict is not None


@pytest.mark.skipif(
    cpu_matrix_isa() != "AVX512-BF16",
    reason=f"the claim is about AVX512-BF16 CPUs without AMX; this is {cpu_matrix_isa()}",
)
def test_exact_at_the_tower_shapes_on_avx512_bf16_without_amx():
    """docs/performance.md's claim for AVX512-BF16 CPUs without AMX (AMD EPYC Zen 4): the packed path is taken for
    every GEMM shape of the CLIP-L tower."""
    for in_features, out_features in CLIP_L_SHAPES:
        _, packed = _pair(in_features, out_features)
        with torch.no_grad():
            packed(torch.randn(10 * 577, in_features).to(torch.bfloat16))
        assert EXACTNESS.verdict((in_features, out_features, True), 10 * 577) is True


@pytest.mark.parametrize("in_features, out_features, rows", [(1024, 1024, 1154), (4096, 1024, 64), (64, 48, 7)])
def test_the_packed_kernel_is_within_fp32_accumulation_error_of_linear(in_features, out_features, rows):
    """Whatever kernel oneDNN picks on this CPU: |packed - plain| <= ulp_bf16(|plain|) + 2 K u32 (|x| |W|^T + |b|)."""
    torch.manual_seed(0)
    x = torch.randn(rows, in_features).to(torch.bfloat16)
    w = (torch.randn(out_features, in_features) * in_features**-0.5).to(torch.bfloat16)
    b = torch.randn(out_features).to(torch.bfloat16)
    try:
        got = torch.ops.mkldnn._linear_pointwise(x, torch.ops.mkldnn._reorder_linear_weight(w, rows), b, "none", [], "")
    except RuntimeError as error:
        pytest.skip(f"this CPU's oneDNN has no packed bf16 kernel: {str(error).splitlines()[0]}")
    plain = F.linear(x, w, b).float()
    magnitude = x.float().abs() @ w.float().abs().t() + b.float().abs()
    bound = plain.abs() * 2**-8 + 2 * in_features * 2**-24 * magnitude + 1e-30
    assert ((got.float() - plain).abs() <= bound).all()


def test_a_kernel_that_differs_is_detected_logged_and_never_used(monkeypatch, caplog):
    calls = _stand_in_kernel(monkeypatch, perturb=lambda call, x, out: _slightly_off(out))
    plain, packed = _pair(64, 256)
    other = use_packed_linears(nn.Sequential(copy.deepcopy(plain)))[0]  # another layer of the same shape
    x = torch.randn(40, 64).to(torch.bfloat16)
    with torch.no_grad(), caplog.at_level(logging.INFO, logger=packed_linear.__name__):
        assert torch.equal(packed(x), plain(x))
        verified = len(calls)
        assert torch.equal(packed(x), plain(x)) and torch.equal(packed(x[:3]), plain(x[:3]))
        assert torch.equal(other(x), plain(x))
    assert verified == 1 and len(calls) == 1  # the shape is off for good, every row count, every layer
    assert EXACTNESS.verdict((64, 256, True), 40) is False and packed._packed is None
    assert "64 -> 256 differs from nn.Linear at 40 rows" in caplog.text
    assert packed_linear.exactness_report()["inexact"] == {"64->256": "differs from nn.Linear at 40 rows"}


def test_a_kernel_that_differs_only_on_other_inputs_of_a_small_product_is_caught(monkeypatch):
    """A 1-row product has too few outputs to reveal another accumulation order: random inputs of the same shape
    are compared too."""
    calls = _stand_in_kernel(monkeypatch, perturb=lambda call, x, out: out if call < 20 else _slightly_off(out))
    plain, packed = _pair(64, 48)
    x = torch.randn(1, 64).to(torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(packed(x), plain(x))
    assert len(calls) == 20  # stopped at the first disagreement
    assert EXACTNESS.verdict((64, 48, True), 1) is False


def test_a_verified_pair_takes_the_packed_path_and_other_row_counts_are_verified_again(monkeypatch):
    calls = _stand_in_kernel(monkeypatch)
    plain, packed = _pair(64, 256)
    x = torch.randn(600, 64).to(torch.bfloat16)  # 600 x 256 outputs: no extra random inputs needed
    with torch.no_grad():
        assert torch.equal(packed(x), plain(x))
        assert len(calls) == 1 and EXACTNESS.verdict((64, 256, True), 600) is True
        for _ in range(3):
            assert torch.equal(packed(x), plain(x))
        assert len(calls) == 4  # the packed path, once per call
        packed(x[:300])
        assert len(calls) == 4 + 1 + 1  # a new row count: verified (its product, one random input), not yet used
    small = 1 + min(packed_linear.MAX_PROBES, -(-packed_linear.VERIFY_ELEMENTS // 256) - 1)  # its product + random ones
    with torch.no_grad():
        packed(x[:1])
    assert len(calls) == 6 + small


def test_a_cpu_without_the_kernel_falls_back(monkeypatch, caplog):
    def refuse(w, rows):
        raise RuntimeError("mkldnn_reorder_linear_weight: bf16 path needs the cpu support avx_ne_convert or avx512bw")

    monkeypatch.setattr(packed_linear.torch.ops.mkldnn, "_reorder_linear_weight", refuse)
    plain, packed = _pair(32, 16)
    x = torch.randn(5, 32).to(torch.bfloat16)
    with torch.no_grad(), caplog.at_level(logging.INFO, logger=packed_linear.__name__):
        assert torch.equal(packed(x), plain(x))
        assert torch.equal(packed(x), plain(x))
    assert EXACTNESS.verdict((32, 16, True), 5) is False
    assert packed_linear.exactness_report()["unsupported"].startswith("mkldnn_reorder_linear_weight: bf16 path needs")
    assert "not available on this CPU" in caplog.text


def test_max_rows_limits_the_packed_path(monkeypatch):
    calls = _stand_in_kernel(monkeypatch)
    plain = nn.Linear(64, 256).to(torch.bfloat16)
    packed = use_packed_linears(nn.Sequential(copy.deepcopy(plain)), max_rows=8)[0]
    with torch.no_grad():
        assert torch.equal(packed(torch.ones(9, 64).to(torch.bfloat16)), plain(torch.ones(9, 64).to(torch.bfloat16)))
        assert calls == []
        packed(torch.ones(8, 64).to(torch.bfloat16))
        assert calls
    use_packed_linears(nn.Sequential(packed))  # no limit again
    assert packed.max_rows is None


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


def test_the_packed_copy_follows_weight_changes(monkeypatch):
    calls = _stand_in_kernel(monkeypatch)
    plain, packed = _pair(32, 16)
    x = torch.randn(5, 32).to(torch.bfloat16)
    with torch.no_grad():
        packed(x)
        first = packed._packed
        packed(x)
        assert packed._packed is first and calls  # reused while the weight is unchanged
        for layer in (plain, packed):
            layer.weight.mul_(-2)  # an in-place update (an optimizer step, load_state_dict)
        assert torch.equal(packed(x), plain(x)) and packed._packed is not first
        new = torch.randn(16, 32).to(torch.bfloat16)
        packed.weight = nn.Parameter(new.clone())
        plain.weight = nn.Parameter(new.clone())
        assert torch.equal(packed(x), plain(x))
        packed.load_state_dict(nn.Linear(32, 16).to(torch.bfloat16).state_dict())
        assert torch.equal(packed(x), nn.functional.linear(x, packed.weight, packed.bias))


def test_moves_copies_and_pickles_drop_the_packed_copy(monkeypatch):
    _stand_in_kernel(monkeypatch)
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


def test_image_encoder_linears_are_packed_where_exact_with_unchanged_names(tiny_model):
    encoder = tiny_model.model.image_encoder
    linears = [m for m in encoder.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is PackedLinear for m in linears)
    assert "vision_tower.encoder.layers.0.mlp.fc1.weight" in dict(encoder.named_parameters())
    model = copy.deepcopy(tiny_model).to(torch.bfloat16)
    pixels = torch.randn(2, 3, 72, 72).to(torch.bfloat16)
    with torch.inference_mode():
        model.get_image_features(pixels)  # verifies each (shape, rows) pair
        packed = model.get_image_features(pixels)
        layers = [m for m in model.model.image_encoder.modules() if isinstance(m, PackedLinear)]
        packed_layers = sum(m._packed is not None for m in layers)
        for m in model.model.image_encoder.modules():
            if type(m) is PackedLinear:
                m.__class__ = nn.Linear
        plain = model.get_image_features(pixels)
    assert torch.equal(packed, plain)  # whatever the CPU verified
    assert packed_layers > 0 or packed_linear.exactness_report()["exact"] == {}


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
    model = use_packed_linears(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)), max_rows=4)
    model.to(torch.bfloat16)
    with torch.no_grad():
        model(torch.randn(2, 8).to(torch.bfloat16))
    packed = [model[0], model[2]]
    packed_linear.restore_linears(model)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]
    assert all(m.__dict__.get("_packed") is None and "max_rows" not in m.__dict__ for m in packed)
