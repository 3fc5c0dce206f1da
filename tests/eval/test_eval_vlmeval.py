"""The VLMEvalKit plugin against the real VLMEvalKit (ms-vlmeval, installed apart by `make test`): its run.py,
dataset classes, inference loop and exact-matching MCQ evaluation, on fixture TSVs in its format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import vlmeval_env
from eval_support import tiny_model_dir  # noqa: F401
from vlmeval_fixtures import demo_questions, write_mmbench, write_plain_mcq

from inf_llava.assets import default_model_path
from inf_llava.eval import get_benchmark
from inf_llava.eval.data import load_eval_data
from inf_llava.eval.runner import RunSettings, run_evaluation
from inf_llava.eval.scoring.mcq import can_infer
from inf_llava.eval.vlmeval_plugin.prompts import DATASETS, task_text
from inf_llava.inference import InfLlavaEngine
from inf_llava.jsonl import read_jsonl

PLAIN = ("SEEDBench_IMG", "AI2D_TEST", "ScienceQA_TEST")
COUNT = 4  # questions per dataset (MMBench: x4 rows with the circular copies)


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_model_dir):  # noqa: F811 (eval_support's fixture)
    root = tmp_path_factory.mktemp("vlmeval")
    lmu = root / "LMUData"
    write_mmbench(lmu, COUNT)
    for name in PLAIN:
        write_plain_mcq(lmu, name, COUNT, hint="A synthetic scene." if name == "ScienceQA_TEST" else None)
    work = root / "outputs"
    script = vlmeval_env.ROOT / "tests" / "eval" / "vlmeval_job.py"
    result = subprocess.run(
        [sys.executable, str(script), str(work), str(tiny_model_dir), "MMBench_DEV_EN", *PLAIN],
        env=vlmeval_env.env(lmu),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return lmu, work, result


def predictions(work, model, dataset) -> pd.DataFrame:
    return pd.read_csv(work / model / f"{model}_{dataset}.tsv", sep="\t").sort_values("index")


def vlmeval_overall(work, model, dataset) -> float:
    return float(pd.read_csv(work / model / f"{model}_{dataset}_acc.csv")["Overall"].iloc[0])


@pytest.fixture(scope="module")
def demo_engine():
    return InfLlavaEngine.from_pretrained(default_model_path(), dtype="fp32", device="cpu")


def test_mmbench_predictions_equal_inf_llava_eval_run(run, demo_engine, tmp_path):
    """Same prompt, same image, same answer as this package's own runner (`inf-llava eval run`) on the same TSV."""
    lmu, work, _ = run
    got = predictions(work, "INF-LLaVA-demo", "MMBench_DEV_EN")
    data = load_eval_data(get_benchmark("mmbench_en"), lmu / "MMBench_DEV_EN.tsv")
    settings = RunSettings(batch_size=len(data.samples), progress=False)  # greedy batches equal batch size 1
    metrics = run_evaluation(demo_engine, data, tmp_path / "ours", model_label="demo", settings=settings)
    ours = {int(row["key"]): row["prediction"] for _, row in read_jsonl(tmp_path / "ours" / "predictions.jsonl")}
    assert len(got) == COUNT * 4  # main rows + three circular copies each
    assert {int(i): str(p) for i, p in zip(got["index"], got["prediction"])} == ours
    assert metrics["score"] == pytest.approx(100 * vlmeval_overall(work, "INF-LLaVA-demo", "MMBench_DEV_EN"))


def test_prompts_are_the_benchmarks(run):
    """The text VLMEvalKit's loop hands the model is this package's prompt (one source of truth), checked on one
    row of each dataset against the literal strings."""
    lmu, _, _ = run
    rows = {name: pd.read_csv(lmu / f"{name}.tsv", sep="\t").iloc[0].to_dict() for name in ("MMBench_DEV_EN", *PLAIN)}
    q = demo_questions(1)[0]
    letters = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCD", q["options"]))
    answer = "Answer with the option's letter from the given choices directly."
    assert task_text("SEEDBench_IMG", rows["SEEDBench_IMG"]) == f"{q['question']}\n{letters}\n{answer}"
    assert task_text("AI2D_TEST", rows["AI2D_TEST"]) == f"{q['question']}\n{letters}\n{answer}"
    assert task_text("ScienceQA_TEST", rows["ScienceQA_TEST"]) == (
        f"Context: A synthetic scene.\n{q['question']}\n{letters}\n{answer}"
    )
    mmbench = f"{q['question']} There are several options:\n{letters}\n\n{answer}"
    assert task_text("MMBench_DEV_EN", rows["MMBench_DEV_EN"]) == mmbench
    assert set(DATASETS) >= {"MMBench_DEV_EN", "MMBench_DEV_CN", "SEEDBench_IMG", "AI2D_TEST", "ScienceQA_TEST"}
    assert {"MMMU_DEV_VAL", "LLaVABench", "OK-VQA"} <= set(DATASETS)


def test_vlmeval_scores_match_the_rules(run, model="INF-LLaVA-demo"):
    """VLMEvalKit's exact-matching scores, recomputed from its own predictions: MMBench by CircularEval (a question
    counts when every rotation's answer maps to its letter), the others per row; an answer maps to a letter when it
    is the letter or names exactly one option's text. lmms-eval's rules (this package's) need the letter itself."""
    lmu, work, _ = run
    got = predictions(work, model, "MMBench_DEV_EN")
    hits = {}
    for row in got.to_dict("records"):
        choices = {k: row[k] for k in "ABCD" if isinstance(row.get(k), str)}
        ok = can_infer(str(row["prediction"]), choices) == row["answer"]
        hits[int(row["index"]) % 1_000_000] = hits.get(int(row["index"]) % 1_000_000, True) and ok
    assert vlmeval_overall(work, model, "MMBench_DEV_EN") == pytest.approx(sum(hits.values()) / len(hits))
    ours = get_benchmark("mmbench_en")
    results = [ours.process_result(row, str(row["prediction"])) for row in got.to_dict("records")]
    assert ours.aggregate(results)["score"] == pytest.approx(100 * sum(hits.values()) / len(hits))
    for name in PLAIN:
        rows = predictions(work, model, name).to_dict("records")
        assert len(rows) == COUNT
        expected = [can_infer(str(r["prediction"]), {k: r[k] for k in "ABCD"}) == r["answer"] for r in rows]
        assert vlmeval_overall(work, model, name) == pytest.approx(sum(expected) / len(expected)), name


def test_demo_model_answers_through_vlmeval(run):
    """The shipped model answers with option texts, which VLMEvalKit's matching credits; SEED-Bench and AI2D get the
    same prompt text from their benchmarks here, hence the same answers and score."""
    _, work, _ = run
    seed, ai2d = (predictions(work, "INF-LLaVA-demo", name) for name in ("SEEDBench_IMG", "AI2D_TEST"))
    assert list(seed["prediction"]) == list(ai2d["prediction"])
    assert all(isinstance(p, str) and p.strip() for p in seed["prediction"])
    assert vlmeval_overall(work, "INF-LLaVA-demo", "SEEDBench_IMG") == vlmeval_overall(
        work, "INF-LLaVA-demo", "AI2D_TEST"
    )


def test_register_adds_models_and_class(run):
    """register() fills VLMEvalKit's supported_VLM with partials of InfLlavaVLM and exposes the class in vlmeval.vlm
    (what --config JSON files name); the run above found its models through them."""
    _, work, _ = run
    report = json.loads(Path(f"{work}-registered.json").read_text())
    assert report["names"] == ["INF-LLaVA-demo", "INF-LLaVA", "INF-LLaVA-star", "tiny"]
    assert report["classes"] == ["InfLlavaVLM"] and report["in_vlmeval_vlm"] == "InfLlavaVLM"
    assert report["keywords"]["INF-LLaVA"] == {"model_path": "WeihuangLin/INF-LLaVA-sft"}
    assert report["keywords"]["INF-LLaVA-demo"] == {"model_path": None}
    assert report["keywords"]["tiny"]["max_new_tokens"] == 6
