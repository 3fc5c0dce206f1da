"""The bounded load test (`make loadtest`, `python -m inf_llava.serve.loadtest`): concurrent requests through the
real `openai` client against a loopback server, zero errors, latency percentiles reported, requests batched."""

import re

import pytest

from inf_llava.serve.loadtest import main

SUMMARY = r"(\d+) requests at concurrency 16 \(after a warm-up round\): (\d+) ok, (\d+) errors, p50 ([\d.]+) ms, "
SUMMARY += r"p99 ([\d.]+) ms"
BATCHING = r"(\d+) generate calls for (\d+) requests incl. warm-up \(mean batch ([\d.]+), largest (\d+)\)"


def run(capsys, requests):
    code = main(["--requests", str(requests), "--concurrency", "16", "--max-tokens", "8"])
    out = capsys.readouterr().out
    summary, batching = re.search(SUMMARY, out), re.search(BATCHING, out)
    assert summary and batching, out
    total, ok, errors, p50, p99 = (
        int(summary[1]),
        int(summary[2]),
        int(summary[3]),
        float(summary[4]),
        float(summary[5]),
    )
    assert code == 0 and (total, ok, errors) == (requests, requests, 0), out
    assert 0 < p50 <= p99
    assert float(batching[3]) > 1.5 and int(batching[4]) > 1, out  # concurrent requests shared generate calls
    print(out)


def test_load_small(capsys):
    run(capsys, 48)


@pytest.mark.slow
def test_load_200_requests_at_concurrency_16(capsys):
    run(capsys, 200)
