"""The judges over a real OpenAI-compatible HTTP endpoint: a stub server on loopback, the real ``openai`` client."""

import json

import eval_fixtures as fx
import pytest
from eval_support import stub_judge, tiny_model_dir  # noqa: F401 - fixtures

from inf_llava.cli import main
from inf_llava.eval import get_benchmark
from inf_llava.eval.data import load_eval_data
from inf_llava.eval.scoring.judge import JUDGE_SYSTEM

SCORES = {"conv": "8 6", "detail": "7,7", "complex": "9 3 "}  # the last one has a trailing space: a parse failure


def _review(body):
    content = body["messages"][-1]["content"]
    category = next(c for c, q in [("conv", "colour"), ("detail", "Describe"), ("complex", "smiling")] if q in content)
    return f"{SCORES[category]}\nAssistant 1 is more detailed."


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_llava_bench_run_with_a_judge(tiny_model_dir, tmp_path, stub_judge, monkeypatch, capsys):  # noqa: F811
    judge = stub_judge(_review)
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    data = fx.write_llava_official(tmp_path / "bench")
    out = tmp_path / "out"
    args = ["eval", "run", "--benchmark", "llava_bench_wild", "--data", str(data), "--model", str(tiny_model_dir)]
    args += ["--max-new-tokens", "3", "--output", str(out), "--no-progress", "--judge-url", judge.url]
    args += ["--judge-model", "gpt-4-0613", "--judge-api-key-env", "JUDGE_KEY"]
    assert main(args) == 0, capsys.readouterr().err

    samples = load_eval_data(get_benchmark("llava_bench_wild"), data).samples
    predictions = _lines(out / "predictions.jsonl")
    assert len(judge.requests) == 3
    for request, headers, sample, row in zip(judge.requests, judge.headers, samples, predictions):
        assert request["model"] == "gpt-4-0613" and request["temperature"] == 0.2 and request["max_tokens"] == 1024
        content = get_benchmark("llava_bench_wild").judge_content(sample.doc, row["prediction"])
        assert request["messages"] == [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": content},
        ]
        assert headers["authorization"] == "Bearer sk-test"
    reviews = _lines(out / "reviews.jsonl")
    assert [r["scores"] for r in reviews] == [[8.0, 6.0], [7.0, 7.0], [-1, -1]]
    assert (
        reviews[0]["review"] == "8 6\nAssistant 1 is more detailed." and reviews[0]["judge_model"] == "stub-judge-0613"
    )
    metrics = json.loads((out / "metrics.json").read_text())
    # reference mean (8 + 7 - 1) / 3 = 4.667, model mean (6 + 7 - 1) / 3 = 4.0 -> 85.7
    assert metrics["score"] == round(4.0 / 4.667 * 100, 1) == 85.7
    assert metrics["categories"] == {"conv": 75.0, "detail": 100.0, "complex": 100.0}
    assert metrics["parse_failures"] == 1 and metrics["judge_models"] == ["stub-judge-0613"]

    # Rerunning (or rescoring) reuses the stored reviews: the judge is not asked again.
    assert main(args) == 0 and len(judge.requests) == 3
    score_args = ["eval", "score", "--benchmark", "llava_bench_wild", "--data", str(data)]
    score_args += ["--predictions", str(out / "predictions.jsonl")]
    capsys.readouterr()
    assert main(score_args) == 0 and "LLaVA-Bench (In-the-Wild): 85.70" in capsys.readouterr().out
    # A changed prediction is judged again.
    rows = _lines(out / "predictions.jsonl")
    rows[0]["prediction"] = "A red car."
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main([*score_args, "--judge-url", judge.url, "--judge-api-key-env", "JUDGE_KEY"]) == 0
    assert len(judge.requests) == 4 and "[Assistant 2]\nA red car.\n\n" in judge.requests[-1]["messages"][1]["content"]


def test_judge_needs_its_key(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    data = fx.write_llava_official(tmp_path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"key": "0", "prediction": "x"}\n')
    args = ["eval", "score", "--benchmark", "llava_bench_wild", "--data", str(data), "--predictions", str(path)]
    assert main([*args, "--judge-url", "http://127.0.0.1:9/v1", "--judge-api-key-env", "NO_SUCH_KEY"]) == 2
    assert "$NO_SUCH_KEY, which is not set" in capsys.readouterr().err


def test_unreachable_judge_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("JUDGE_KEY", "k")
    data = fx.write_llava_official(tmp_path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"key": "0", "prediction": "x"}\n')
    args = ["eval", "score", "--benchmark", "llava_bench_wild", "--data", str(data), "--predictions", str(path)]
    judge = ["--judge-url", "http://127.0.0.1:9/v1", "--judge-api-key-env", "JUDGE_KEY", "--judge-max-retries", "0"]
    assert main([*args, *judge]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error")]  # (the rest is the progress bar)
    assert errors == ["error: judge gpt-4-0613 at http://127.0.0.1:9/v1 failed: Connection error."]


def test_mmbench_judge_fallback(tmp_path, stub_judge, monkeypatch, capsys):  # noqa: F811
    judge = stub_judge(lambda body: "The answer is B")
    monkeypatch.setenv("JUDGE_KEY", "k")
    data = fx.write_mmbench_tsv(tmp_path)
    samples = load_eval_data(get_benchmark("mmbench_en"), data).samples
    # Every copy right except one unresolvable answer on q2's second copy, whose answer letter is B.
    rows = []
    for sample in samples:
        unresolved = sample.doc["index"] == 1_000_002
        rows.append({"key": sample.key, "prediction": "I cannot tell" if unresolved else sample.doc["answer"]})
    assert [s.doc["answer"] for s in samples if s.doc["index"] == 1_000_002] == ["A"]
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "score", "--benchmark", "mmbench_en", "--data", str(data), "--predictions", str(path)]
    assert main([*args, "--output", str(tmp_path / "m.json")]) == 0
    assert json.loads((tmp_path / "m.json").read_text())["unresolved"] == 1
    assert (
        main(
            [*args, "--judge-url", judge.url, "--judge-api-key-env", "JUDGE_KEY", "--output", str(tmp_path / "j.json")]
        )
        == 0
    )
    metrics = json.loads((tmp_path / "j.json").read_text())
    assert metrics["judged"] == 1 and metrics["unresolved"] == 0
    assert metrics["score"] == pytest.approx(200 / 3)  # the judge said B, the copy's answer is A: q2 wrong
    request = judge.requests[0]
    assert request["temperature"] == 0 and request["max_tokens"] == 256 and len(request["messages"]) == 1
    prompt = request["messages"][0]["content"]
    assert prompt.endswith("Question: How many objects??\nOptions: There are several options: \nA. two\nB. one\n"
                           "\nAnswer: I cannot tell\nYour output: ")  # fmt: skip
