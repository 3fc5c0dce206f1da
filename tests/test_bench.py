"""Smoke tests of the benchmark code on narrow models: the numbers it reports are consistent and the equality check
really compares the two implementations (the timings themselves are not asserted)."""

import json

import pytest

from inf_llava.bench import encode, flops, report
from inf_llava.bench.models import BenchSizes
from inf_llava.presets import official_config


def test_encode_bench_checks_equality_and_reports_ratios():
    result = encode.run(
        "fp32", layers=2, repeats=1, lm_width=64, hidden_size=64, intermediate_size=128, num_attention_heads=4
    )
    assert result["equal_outputs"] and result["max_rel_err"] < 1e-4
    assert result["tower_views"] == {"reference": 19, "ours": 10}
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


def test_flop_counts_official_shape():
    config = official_config()
    # spec 17.7: 19 CLIP-L/336 forwards ~ 7.4 TFLOP; the package runs 10 views through 23 layers.
    full = flops.encoder_flops(config, views=19, layers=24, centre_only=False)
    ours = flops.encoder_flops(config, views=10, layers=23, centre_only=True)
    assert 7.0e12 < full["tower"] < 7.8e12
    assert ours["total"] / full["total"] == pytest.approx((10 * 23) / (19 * 24), rel=0.05)
    assert flops.projector_flops(config) == 576 * (1024 * 4096 + 4096 * 4096) * 2


def test_tokens_and_generate_benches_on_a_small_llm():
    from inf_llava.bench import generate, tokens

    sizes = BenchSizes(llm_width=64, llm_layers=1, llm_heads=2, llm_intermediate=128, tower_width=32, tower_layers=2)
    tok = tokens.run(sizes, image_sizes=((336, 336), (480, 640)), repeats=1)
    rows = {r["image"]: r for r in tok["rows"]}
    assert rows["480x640"]["ours_visual_tokens"] == 576
    assert rows["480x640"]["next_visual_tokens"] == 2340  # HF's documented AnyRes count for a 480x640 image
    gen = generate.run(sizes, new_tokens=4, batch_sizes=(1, 2), repeats=1)
    assert [r["batch"] for r in gen["batched"]] == [1, 2]  # timings themselves are not asserted (machine load)
    assert {"ours_decode_tok_s", "llava_decode_tok_s", "decode_ratio"} <= gen.keys()


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
            {
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
                "speedup_vs_fp32": 2.0,
            },
        ],
    }
    rows = {r[0]: r for r in report.targets(results)}
    assert rows["encode speedup (fp32, equal outputs)"][3] is True
    assert rows["encode bf16 vs fp32"][3] is False
    path = report.write(results, tmp_path)
    text = path.read_text()
    assert "| encode bf16 vs fp32 | >= 3 | 2.0 | **no** |" in text
    assert (tmp_path / "img" / "performance.png").stat().st_size > 1000
    assert json.loads((tmp_path / "performance.json").read_text())["encode"][0]["speedup"] == 2.0
