"""Smoke tests of the benchmark code on narrow models: the numbers it reports are consistent and the equality check
really compares the two implementations (the timings themselves are not asserted)."""

import json

import pytest

from inf_llava.bench import encode, flops, report
from inf_llava.bench.models import BenchSizes
from inf_llava.presets import official_config

# A narrow CLIP-shaped encoder: the bench's code paths without CLIP-L's cost.
NARROW = dict(lm_width=64, hidden_size=64, intermediate_size=128, num_attention_heads=4)


def test_encode_bench_checks_equality_and_reports_ratios():
    result = encode.run("fp32", layers=2, repeats=1, **NARROW)
    assert result["equal_outputs"] and result["max_rel_err"] < 1e-4
    assert result["tower_views"] == {"reference": 19, "ours": 10}
    assert result["shape"] == {
        "width": 64,
        "patches_per_side": 24,
        "heads": 4,
        "head_dim": 16,
        "grid": [3, 3],
        "projector": "mlp2x_gelu",
        "lm_width": 64,
    }
    assert result["speedup"] == pytest.approx(result["reference_s"] / result["ours_s"], rel=0.01)
    assert result["fraction_of_peak"] == pytest.approx(result["achieved_gflops"] / result["peak_gflops"], abs=0.002)
    for key in (
        "reference_s",
        "ours_s",
        "speedup",
        "max_rel_err",
        "achieved_gflops",
        "peak_gflops",
        "fraction_of_peak",
        "dtype",
        "layers",
    ):
        assert key in result
    json.dumps(result)


def test_encode_bench_in_bf16_measures_the_packed_linears():
    from inf_llava.modeling.packed_linear import available

    result = encode.run("bf16", layers=2, repeats=1, compare_fp32=False, peak_shapes=[(256, 256, 256)], **NARROW)
    if not available():
        assert "packed_linears_speedup" not in result
        return
    used, total = result["packed_layers"]
    assert 0 <= used <= total and total > 0  # which shapes verify exact depends on the CPU
    assert result["packed_linears_speedup"] == pytest.approx(result["plain_linears_s"] / result["ours_s"], rel=0.01)


def test_linear_bench_reports_this_cpus_verdicts_and_ratios():
    from inf_llava.bench import linear
    from inf_llava.modeling.packed_linear import EXACTNESS
    from inf_llava.runtime import cpu_matrix_isa

    shapes = linear.official_shapes()
    assert shapes[0] == ("tower q/k/v/out", 10 * 577, 1024, 1024)  # centre-only plan: 9 tiles + 1 strided view
    assert ("LM decode gate/up", 1, 4096, 14336) in shapes
    result = linear.run(repeats=1, shapes=[("small", 7, 64, 48), ("wide", 33, 64, 256)])
    assert result["cpu_matrix_isa"] == cpu_matrix_isa()
    for row, (rows, k, n) in zip(result["rows"], [(7, 64, 48), (33, 64, 256)]):
        assert row["exact"] == bool(EXACTNESS.verdict((k, n, True), rows))
        if "speedup" in row:
            # the ratio of the unrounded times: within what rounding each time to 1 us allows
            half = 0.0005
            low = (row["plain_ms"] - half) / (row["packed_ms"] + half)
            high = (row["plain_ms"] + half) / max(row["packed_ms"] - half, 1e-9)
            assert low - 0.0005 <= row["speedup"] <= high + 0.0005, row
    json.dumps(result)
    with pytest.raises(ValueError, match="CPU bf16 packed path"):
        linear.run(device="cuda")


@pytest.mark.slow
def test_encode_bench_compiled():
    result = encode.run("bf16", layers=2, repeats=1, compile=True, compare_fp32=False, **NARROW)
    assert result["compiled"] and result["compile_s"] > 0
    assert result["equal_outputs"], result["max_rel_err"]


def test_flop_counts_official_shape():
    config = official_config()
    # spec 17.7: 19 CLIP-L/336 forwards ~ 7.4 TFLOP; the package runs 10 views through 23 layers.
    full = flops.encoder_flops(config, views=19, layers=24, centre_only=False)
    ours = flops.encoder_flops(config, views=10, layers=23, centre_only=True)
    assert 7.0e12 < full["tower"] < 7.8e12
    assert ours["total"] / full["total"] == pytest.approx((10 * 23) / (19 * 24), rel=0.05)
    assert flops.projector_flops(config) == 576 * (1024 * 4096 + 4096 * 4096) * 2


def test_tokens_and_generate_benches_on_a_small_llm(tmp_path):
    from inf_llava.bench import generate, tokens

    sizes = BenchSizes(llm_width=64, llm_layers=1, llm_heads=2, llm_intermediate=128, tower_width=32, tower_layers=2)
    tok = tokens.run(sizes, image_sizes=((336, 336), (480, 640)), repeats=1)
    rows = {r["image"]: r for r in tok["rows"]}
    assert rows["480x640"]["ours_visual_tokens"] == 576
    assert rows["480x640"]["next_visual_tokens"] == 2340  # HF's documented AnyRes count for a 480x640 image
    # the dynamic-grid model on the same weights: its grid per image, the same tokens, the views it encodes
    assert [rows[k]["dynamic_grid"] for k in ("336x336", "480x640")] == ["1x1", "2x2"]
    assert all(r["dynamic_visual_tokens"] == 576 and r["fixed_grid"] == "3x3" for r in rows.values())
    assert [rows[k]["dynamic_tower_views"] for k in ("336x336", "480x640")] == [2, 9]  # 1x1: K + 1; 2x2: 2K + 1
    assert rows["480x640"]["fixed_tower_views"] == 10
    assert rows["480x640"]["fixed_canvas_share"] == rows["480x640"]["dynamic_canvas_share"] == 0.75
    text = report.write({"machine": {"cpu": "test"}, "tokens": tok}, tmp_path).read_text()
    assert "### Fixed 3x3 vs dynamic grids" in text and "| 480x640 | 3x3 | 10 | 1.0 | 0.75 | 2x2 | 576 | 9 |" in text
    gen = generate.run(sizes, new_tokens=4, batch_sizes=(1, 2), repeats=1)
    assert [r["batch"] for r in gen["batched"]] == [1, 2]  # timings themselves are not asserted (machine load)
    assert {"ours_decode_tok_s", "llava_decode_tok_s", "decode_ratio"} <= gen.keys()
    assert gen["packed_lm_weights"]["same_tokens"] is True  # bf16 decoding with and without packed LM weights


_BF16_ROW = {
    "dtype": "bf16",
    "layers": 24,
    "reference_s": 1.0,
    "ours_s": 0.5,
    "speedup": 2.0,
    "max_rel_err": 1e-3,
    "equal_outputs": True,
    "achieved_gflops": 300.0,
    "peak_gflops": 600.0,
    "fraction_of_peak": 0.5,
}


def test_report_lists_targets(tmp_path):
    results = {
        "machine": {"cpu": "test"},
        "encode": [
            {
                "dtype": "fp32",
                "layers": 24,
                "reference_s": 2.0,
                "ours_s": 1.0,
                "speedup": 2.0,
                "max_rel_err": 1e-7,
                "equal_outputs": True,
                "achieved_gflops": 90.0,
                "peak_gflops": 100.0,
                "fraction_of_peak": 0.9,
            },
            {**_BF16_ROW, "speedup_vs_fp32": 2.0},
            {**_BF16_ROW, "compiled": True, "ours_s": 0.4, "fraction_of_peak": 0.88, "compile_s": 21.5},
        ],
    }
    rows = {r[0]: r for r in report.targets(results)}
    assert rows["encode speedup (fp32, equal outputs)"][3] is True
    assert rows["encode bf16 vs fp32"][3] is False  # eager against eager: the compiled row does not replace it
    assert rows["encode fraction of peak (bf16)"][2:] == [0.5, False]
    assert rows["encode fraction of peak (bf16, torch.compile)"][2:] == [0.88, True]
    path = report.write(results, tmp_path)
    text = path.read_text()
    assert "| encode bf16 vs fp32 | >= 3 | 2.0 | **no** |" in text
    assert "| encode fraction of peak (bf16, torch.compile) | >= 0.85 | 0.88 | yes |" in text
    # rows without a recorded shape (older JSON) are described as the released model's tower
    assert "Tower of width 1024 with 24x24 patches per view and 16 heads of dim 64" in text
    assert "(19 tower calls keeping every hidden state" in text
    assert "| bf16 | torch.compile | 24 | 1.0 | 0.4 |" in text and "| 21.5 |" in text
    assert (tmp_path / "img" / "performance.png").stat().st_size > 1000
    assert "Every number on this page comes from that machine: test, ? threads." in text
    assert "Pre-packed bf16 linears" not in text  # no linear results
    assert json.loads((tmp_path / "performance.json").read_text())["encode"][0]["speedup"] == 2.0


def test_report_names_the_cpu_of_the_packed_linear_numbers(tmp_path):
    machine = {"cpu": "AMD EPYC 9R14", "cpu_matrix_isa": "AVX512-BF16", "threads": 2}
    linear = {
        "bench": "linear",
        "cpu_matrix_isa": "AVX512-BF16",
        "rows": [
            {
                "name": "tower fc1",
                "rows": 5770,
                "in": 1024,
                "out": 4096,
                "exact": True,
                "plain_ms": 2.0,
                "packed_ms": 1.6,
                "speedup": 1.25,
            },
            {"name": "odd", "rows": 1, "in": 8, "out": 8, "exact": False, "packed_kernel": "needs avx512bw"},
        ],
    }
    bf16 = {**_BF16_ROW, "packed_linears_speedup": 1.1, "plain_linears_s": 0.55, "packed_layers": [150, 150]}
    text = report.write({"machine": machine, "encode": [bf16], "linear": linear}, tmp_path).read_text()
    assert "Every number on this page comes from that machine: AMD EPYC 9R14 (AVX512-BF16), 2 threads." in text
    assert "Measured on AMD EPYC 9R14 (AVX512-BF16), 2 threads." in text
    assert "| tower fc1 | 5770 | 1024 | 4096 | yes | 2.0 | 1.6 | 1.25 |" in text
    assert "| odd | 1 | 8 | 8 | **no** |  | needs avx512bw |  |" in text
    assert "1.1x faster with the packed linears than with plain `nn.Linear` (0.5 s vs 0.55 s; 150 of 150" in text


def test_report_links_gpu_results_only_when_they_exist(tmp_path):
    results = {"machine": {"cpu": "test"}, "command": "inf-llava bench all --layers 2 --device cpu --dtype fp32"}
    text = report.write(results, tmp_path).read_text()
    assert "Generated by `inf-llava bench all --layers 2 --device cpu --dtype fp32`" in text
    assert "Not measured yet: no GPU" in text and "scripts/device-bench.sh" in text
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "performance.md").write_text("# Performance on a GPU\n")
    text = report.write(results, tmp_path).read_text()
    assert "[gpu/performance.md](gpu/performance.md)" in text and "Not measured yet" not in text
    gpu = {"machine": {"gpu": "test"}, "encode": [{**_BF16_ROW, "device": "cuda:0"}]}
    gpu_text = report.write(gpu, tmp_path / "gpu").read_text()
    assert gpu_text.startswith("# Performance on a GPU\n") and "## On a GPU" not in gpu_text


def test_median_seconds_synchronises_cuda_around_each_timed_call(monkeypatch):
    from inf_llava.bench import timing

    events = []
    monkeypatch.setattr(timing.torch.cuda, "synchronize", lambda *a: events.append("sync"))
    timing.median_seconds(lambda: events.append("call"), repeats=2, warmup=1, device="cuda")
    assert events == ["call", "sync", "call", "sync", "sync", "call", "sync"]
    events.clear()
    timing.median_seconds(lambda: events.append("call"), repeats=2, warmup=1, device="cpu")
    assert events == ["call", "call", "call"]


def test_bench_cli_refuses_cuda_without_a_gpu_in_one_line(monkeypatch, capsys):
    from inf_llava.cli import main

    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["bench", "encode", "--device", "cuda", "--layers", "2"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device cuda: no CUDA device is available here" in err


def test_llm_benches_take_a_dtype():
    from inf_llava.bench import generate, tokens

    sizes = BenchSizes(llm_width=64, llm_layers=1, llm_heads=2, llm_intermediate=128, tower_width=32, tower_layers=2)
    tok = tokens.run(sizes, image_sizes=((336, 336),), repeats=1, dtype="bf16")
    assert (tok["dtype"], tok["device"]) == ("bf16", "cpu") and tok["rows"][0]["ours_visual_tokens"] == 576
    gen = generate.run(sizes, new_tokens=3, batch_sizes=(1,), repeats=1, dtype="bf16")
    assert gen["dtype"] == "bf16" and gen["ours_decode_tok_s"] > 0


@pytest.mark.gpu
def test_encode_bench_on_cuda():
    result = encode.run(
        "bf16",
        layers=2,
        repeats=1,
        **NARROW,
        device="cuda",
        peak_shapes=[(1024, 1024, 1024)],
    )
    assert result["device"].startswith("cuda") and result["equal_outputs"]
    assert result["speedup_vs_fp32"] > 0


def test_interleaved_timing_takes_turns_after_warming_up_each_side():
    from inf_llava.bench import timing

    order = []
    seconds = timing.interleaved_median_seconds(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=3, warmup=1
    )
    assert order == ["a", "b", "a", "b", "a", "b", "a", "b"]
    assert set(seconds) == {"a", "b"} and all(v >= 0 for v in seconds.values())
