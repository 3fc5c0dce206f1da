"""``inf-llava eval run / score / report`` end to end with a tiny model saved to disk, on generated fixtures in
each distributed format; resuming; sharding over 2 processes with torchrun (gloo)."""

import json
import os
import socket
import subprocess
import sys

import eval_fixtures as fx
import pytest
from eval_support import tiny_model_dir  # noqa: F401 - fixture

from inf_llava.cli import main
from inf_llava.eval import BENCHMARKS, get_benchmark
from inf_llava.eval.data import load_eval_data
from inf_llava.eval.prompting import render_eval_prompt
from inf_llava.inference import GenerationSettings, InfLlavaEngine
from inf_llava.processing.templates import get_template


def _run(args, capsys=None):
    code = main(["eval", *map(str, args)])
    out = capsys.readouterr() if capsys is not None else None
    return code, out


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("name", BENCHMARKS)
def test_eval_run_every_benchmark(name, tiny_model_dir, tmp_path, capsys):  # noqa: F811
    data = fx.WRITERS[name](tmp_path / "data")
    out = tmp_path / "out"
    args = ["run", "--benchmark", name, "--data", data, "--model", tiny_model_dir, "--max-new-tokens", 3]
    code, captured = _run([*args, "--batch-size", 2, "--output", out, "--no-progress"], capsys)
    assert code == 0, captured.err
    samples = load_eval_data(get_benchmark(name), data).samples
    predictions = _lines(out / "predictions.jsonl")
    assert [p["key"] for p in predictions] == [s.key for s in samples]
    assert all(isinstance(p["prediction"], str) and p["completion_tokens"] <= 3 for p in predictions)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"] == name and metrics["scored"] == len(samples) and metrics["missing_predictions"] == 0
    assert len(_lines(out / "results.jsonl")) == len(samples)
    if name == "llava_bench_wild":  # no judge configured: no score, and the output says why
        assert metrics["score"] is None and metrics["missing_reviews"] == len(samples)
        assert "pass --judge-url" in captured.out
    else:
        assert 0.0 <= metrics["score"] <= 100.0
        assert f"{metrics['title']}: {metrics['score']:.2f}" in captured.out
    assert json.loads((out / "run.json").read_text())["model"] == str(tiny_model_dir)


def test_predictions_are_the_engines_answers_to_the_lmms_eval_prompt(tiny_model_dir, tmp_path):  # noqa: F811
    data_path = fx.write_mmmu_hub(tmp_path / "data")
    out = tmp_path / "out"
    _run(["run", "--benchmark", "mmmu_val", "--data", data_path, "--model", tiny_model_dir, "--max-new-tokens", 4,
          "--output", out, "--no-progress"])  # fmt: skip
    engine = InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="fp32")
    benchmark = get_benchmark("mmmu_val")
    template = get_template(engine.template)
    for sample, row in zip(load_eval_data(benchmark, data_path).samples, _lines(out / "predictions.jsonl")):
        images = sample.images()
        prompt = render_eval_prompt(template, benchmark.build_prompt(sample.doc), len(images))
        expected = engine.complete([prompt], [images], GenerationSettings(max_new_tokens=4))[0].text
        assert row["prediction"] == expected


def test_resume_keeps_rows_and_drops_a_torn_line(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    data = fx.write_seed_official(tmp_path / "data")
    out = tmp_path / "out"
    base = ["run", "--benchmark", "seedbench", "--data", data, "--model", tiny_model_dir, "--output", out]
    base += ["--max-new-tokens", 2, "--no-progress"]
    assert _run([*base, "--limit", 2])[0] == 0
    first = (out / "predictions.jsonl").read_text()
    rows = _lines(out / "predictions.jsonl")
    rows[0]["prediction"] = "B"  # a marker: a resumed run must not regenerate this row
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"key": "102", "predi')
    assert _run(base, capsys)[0] == 0
    resumed = _lines(out / "predictions.jsonl")
    assert [r["key"] for r in resumed] == ["100", "101", "102"]
    assert resumed[0]["prediction"] == "B" and json.dumps(resumed[1]) + "\n" == first.splitlines(True)[1]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scored"] == 3 and metrics["correct"] >= 1  # the marker row "B" is right
    # Rank files left by an interrupted 2-process run count as done for a single-process resume, then merge away.
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in resumed[:1]))
    (out / "predictions.rank1-of-2.jsonl").write_text(json.dumps({**resumed[1], "prediction": "D"}) + "\n")
    assert _run(base, capsys)[0] == 0
    final = _lines(out / "predictions.jsonl")
    assert [r["prediction"] for r in final[:2]] == ["B", "D"] and final[2] == resumed[2]
    assert sorted(p.name for p in out.glob("predictions*")) == ["predictions.jsonl"]
    # A different configuration may not write into the same folder.
    code, captured = _run([*base[:-3], "--max-new-tokens", 5, "--no-progress"], capsys)
    assert code == 2
    assert captured.err.strip().endswith("choose another --output (or delete the folder) to start a new run")
    assert captured.err.count("\n") == 1


def test_score_offline_with_known_predictions(tmp_path, capsys):
    data = fx.write_mmbench_tsv(tmp_path)
    samples = load_eval_data(get_benchmark("mmbench_en"), data).samples
    predictions = []
    for sample in samples:
        index, answer = sample.doc["index"], sample.doc["answer"]
        text = {0: f"{answer}.", 1: "A" if index == 1_000_001 else answer, 2: "I cannot tell"}[index % 1_000_000]
        predictions.append({"key": sample.key, "prediction": text})
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in predictions))
    out = tmp_path / "metrics.json"
    args = ["score", "--benchmark", "mmbench_en", "--data", data, "--predictions", path, "--output", out]
    code, captured = _run(args, capsys)
    assert code == 0, captured.err
    metrics = json.loads(out.read_text())
    # q0 right on every copy, q1 wrong on its third copy, q2 unresolvable -> counted wrong
    assert metrics["score"] == pytest.approx(100 / 3) and metrics["questions"] == 3
    assert metrics["unresolved"] == 1 and metrics["categories"] == {"attribute": 0.0, "object": 100.0}
    assert "MMBench-EN (dev): 33.33" in captured.out


def test_score_reports_missing_and_unmatched_predictions(tmp_path, capsys):
    data = fx.write_ai2d_hub(tmp_path)
    path = tmp_path / "p.jsonl"
    path.write_text('{"key": "0", "prediction": "B. x"}\n{"key": "77", "prediction": "A"}\n')
    code, captured = _run(["score", "--benchmark", "ai2d", "--data", data, "--predictions", path], capsys)
    assert code == 0 and "score" in captured.out
    assert "note: 2 of 3 samples have no prediction and were not scored" in captured.out
    assert "note: 1 prediction(s) match no sample of the data and were ignored" in captured.out
    path.write_text('{"key": "x1", "prediction": "A"}\n')
    code, captured = _run(["score", "--benchmark", "ai2d", "--data", data, "--predictions", path], capsys)
    assert code == 2 and "none of the 1 predictions matches a sample" in captured.err
    path.write_text('{"key": "0"}\n')
    code, captured = _run(["score", "--benchmark", "ai2d", "--data", data, "--predictions", path], capsys)
    assert code == 2 and "p.jsonl line 1: expected {'key': ..., 'prediction': '...'}" in captured.err


def test_report_table(tmp_path, capsys):
    for model, name, score in [
        ("runs/a/tiny", "mmbench_en", 71.0),
        ("runs/b/tiny", "ai2d", 50.5),
        ("x/other", "ai2d", 1),
    ]:
        folder = tmp_path / model.replace("/", "_") / name
        folder.mkdir(parents=True)
        benchmark = get_benchmark(name)
        metrics = {"benchmark": name, "paper_column": benchmark.paper_column, "score": score, "model": model}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    code, captured = _run(["report", tmp_path], capsys)
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0] == "| Model | ScienceQA-img | OKVQA | SEEDBench | MMB | MMB-CN | AI2D | LLaVA-wild | MMMU |"
    assert lines[2] == "| INF-LLaVA (paper) | 75.71 | 60.67 | 70.47 | 70.35 | 63.23 | 60.59 | 67.50 | 37.00 |"
    assert lines[3].startswith("| INF-LLaVA* (paper) | 77.44 |")
    assert "| other | - | - | - | - | - | 1.00 (-59.59) | - | - |" in lines
    assert "| tiny | - | - | - | 71.00 (+0.65) | - | 50.50 (-10.09) | - | - |" in lines
    code, captured = _run(["report", tmp_path / "missing"], capsys)
    assert code == 2 and captured.err.startswith("error: ")


def test_cli_user_errors_are_one_line(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    code, captured = _run(["run", "--benchmark", "ai2d", "--data", tmp_path / "nothing", "--model", tiny_model_dir],
                          capsys)  # fmt: skip
    assert code == 2 and captured.err == f"error: {tmp_path / 'nothing'}: no such file or directory\n"
    with pytest.raises(SystemExit):
        main(["eval", "run", "--benchmark", "vqav2", "--data", "x"])
    assert "invalid choice: 'vqav2'" in capsys.readouterr().err
    data = fx.write_ai2d_hub(tmp_path)
    code, captured = _run(["run", "--benchmark", "ai2d", "--data", data, "--model", tiny_model_dir, "--batch-size", 0,
                           "--output", tmp_path / "o"], capsys)  # fmt: skip
    assert code == 2 and captured.err == "error: --batch-size must be >= 1, got 0\n"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_merge_to_the_single_process_run(tiny_model_dir, tmp_path):  # noqa: F811
    data = fx.write_mmbench_tsv(tmp_path / "data")
    common = ["--benchmark", "mmbench_en", "--data", data, "--model", tiny_model_dir, "--max-new-tokens", 3]
    common += ["--batch-size", 2, "--no-progress"]
    assert _run(["run", *common, "--output", tmp_path / "single"])[0] == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(_free_port()), "-m", "inf_llava", "eval", "run", *map(str, common), "--output",
               str(tmp_path / "sharded")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("MMBench-EN (dev):") == 1  # only rank 0 reports
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert (sharded / "predictions.jsonl").read_bytes() == (single / "predictions.jsonl").read_bytes()
    assert sorted(p.name for p in sharded.iterdir()) == [
        "metrics.json",
        "predictions.jsonl",
        "results.jsonl",
        "run.json",
    ]
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (single, sharded))
    assert a["score"] == b["score"] and b["world_size"] == 2
