"""The serving benchmark's bookkeeping (no servers: `make bench-serve` runs them): levels, medians, ratios, report."""

import json

import pytest

from inf_llava.bench.serve import BEGIN, END, Level, markdown_table, parse_levels, summarize, write_report


def row(side, round_, concurrency, rps, p50, p99, errors=0):
    return dict(
        side=side, round=round_, concurrency=concurrency, requests_per_s=rps, p50_ms=p50, p99_ms=p99, errors=errors
    )


def test_parse_levels():
    assert parse_levels("1:24,16:96") == [Level(1, 24), Level(16, 96)]
    assert parse_levels("4") == [Level(4, 32)]  # default: 8 requests per concurrent client
    with pytest.raises(ValueError, match="must be >= 1"):
        parse_levels("0:5")


def test_summary_takes_medians_over_rounds_and_ratios_of_them():
    rows = [
        row("inf-llava", 0, 1, 10.0, 50, 90),
        row("inf-llava", 1, 1, 20.0, 40, 70, errors=1),
        row("inf-llava", 2, 1, 12.0, 45, 80),
        row("vllm", 0, 1, 30.0, 20, 30),
        row("vllm", 1, 1, 36.0, 25, 40),
        row("vllm", 2, 1, 33.0, 22, 35),
    ]
    (summary,) = summarize(rows, [Level(1, 24)])
    assert summary["inf-llava:requests_per_s"] == 12.0 and summary["vllm:requests_per_s"] == 33.0
    assert summary["ratio:requests_per_s"] == pytest.approx(2.75)
    assert summary["ratio:p50_ms"] == pytest.approx(22 / 45) and summary["ratio:p99_ms"] == pytest.approx(35 / 80)
    assert summary["inf-llava:errors"] == 1 and summary["vllm:errors"] == 0
    table = markdown_table([summary])
    assert "| 1 | 24 | 12.0 | 33.0 | 2.75x | 45 / 80 | 22 / 35 | 1, 0 |" in table


def test_report_replaces_only_its_own_block(tmp_path):
    page = tmp_path / "serving.md"
    page.write_text(f"# Serving\n\nbefore\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    levels = [Level(1, 2)]
    rows = [row("inf-llava", 0, 1, 1.0, 10, 20), row("vllm", 0, 1, 2.0, 5, 8)]
    results = {
        "machine": {"cpu": "Test CPU", "torch": "2.13.0", "transformers": "5.19.0"},
        "model": "/x/demo-model",
        "settings": {"dtype": "bf16", "max_tokens": 16, "rounds": 1, "vllm_version": "0.32.0"},
        "measurements": rows,
        "summary": summarize(rows, levels),
    }
    for _ in range(2):  # rewriting is idempotent
        write_report(results, tmp_path)
    text = page.read_text()
    assert text.startswith("# Serving\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "old table" not in text and text.count(BEGIN) == 1 and "| 1 | 2 | 1.0 | 2.0 | 2.00x |" in text
    assert "Test CPU" in text and "`demo-model`, bf16" in text
    assert json.loads((tmp_path / "serving-bench.json").read_text())["measurements"] == rows
