"""The lmms-eval model plugin against the real lmms-eval (installed by ``make setup``): registration, the ``lmms``
interface with real ``Instance`` requests, and a full ``python -m lmms_eval --model inf_llava`` run whose answers
equal ``inf-llava eval run``'s."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import eval_fixtures as fx
import pytest
import torch
from eval_support import tiny_model_dir  # noqa: F401 - fixture
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from inf_llava.cli import main
from inf_llava.eval import get_benchmark
from inf_llava.eval.lmms_plugin import CLASS_PATH, manifest
from inf_llava.eval.lmms_plugin.models import AVAILABLE_MODELS
from inf_llava.eval.prompting import render_eval_prompt
from inf_llava.inference import GenerationSettings
from inf_llava.processing.templates import get_template


def test_registration_entry_point_and_legacy_plugin():
    from lmms_eval.api.registry import MODEL_REGISTRY
    from lmms_eval.models import get_model

    cls = get_model("inf_llava")  # through the package's lmms_eval.models entry point
    assert f"{cls.__module__}.{cls.__name__}" == CLASS_PATH and issubclass(cls, lmms) and cls.is_simple
    assert manifest().model_id == "inf_llava" and manifest().simple_class_path == CLASS_PATH
    assert AVAILABLE_MODELS == {"inf_llava": "InfLlava"}  # LMMS_EVAL_PLUGINS=inf_llava.eval.lmms_plugin
    assert MODEL_REGISTRY["inf_llava"] is cls  # register_model(), what lmms-eval 0.2-0.5 look up


def _requests(kind, rows, task="t", split="test"):
    return [Instance(kind, args, idx=0, metadata={"task": task, "doc_id": i, "repeats": 1}) for i, args in rows]


@pytest.fixture()
def plugin(tiny_model_dir):  # noqa: F811
    from lmms_eval.models import get_model

    model = get_model("inf_llava").create_from_arg_string(f"pretrained={tiny_model_dir},batch_size=2,dtype=fp32")
    docs = [{"q": f"Question {i}?", "image": fx.image(i, (40 + 8 * i, 30))} for i in range(3)]
    model.task_dict = {"t": {"test": docs}}
    return model, docs


def test_generate_until_matches_the_engine(plugin):
    model, docs = plugin

    def visual(doc):
        return [doc["image"]]

    rows = [
        (i, (doc["q"], {"max_new_tokens": 3 if i != 1 else 5, "until": ["ASSISTANT:"]}, visual, i, "t", "test"))
        for i, doc in enumerate(docs)
    ]
    answers = model.generate_until(_requests("generate_until", rows))
    engine = model.engine
    template = get_template("llama3")
    for i, doc in enumerate(docs):
        prompt = render_eval_prompt(template, doc["q"], 1)
        settings = GenerationSettings(max_new_tokens=3 if i != 1 else 5)
        assert answers[i] == engine.complete([prompt], [[doc["image"].convert("RGB")]], settings)[0].text
    with pytest.raises(ValueError, match="num_beams > 1"):
        model.generate_until(_requests("generate_until", [(0, ("q", {"num_beams": 2}, visual, 0, "t", "test"))]))
    with pytest.raises(ValueError, match="takes images only"):
        model.generate_until(_requests("generate_until", [(0, ("q", {}, lambda d: ["a.mp4"], 0, "t", "test"))]))


def test_loglikelihood_is_the_continuations_log_probability(plugin):
    model, docs = plugin
    rows = [(0, ("Which letter?", " B", lambda d: [d["image"]], 0, "t", "test"))]
    [(total, greedy)] = model.loglikelihood(_requests("loglikelihood", rows))
    engine, template = model.engine, get_template("llama3")
    prompt = render_eval_prompt(template, "Which letter?", 1)
    context = engine.processor.encode(prompt).input_ids
    inputs = engine.inputs([prompt + " B"], [[docs[0]["image"].convert("RGB")]])
    ids = inputs["input_ids"][0]
    with torch.no_grad():
        logits = engine.model(**inputs).logits[0]
    expected = sum(torch.log_softmax(logits[t - 1], -1)[ids[t]].item() for t in range(len(context), len(ids)))
    assert total == pytest.approx(expected, abs=1e-4)
    picks = [int(logits[t - 1].argmax()) == int(ids[t]) for t in range(len(context), len(ids))]
    assert greedy is all(picks)


def test_lmms_eval_cli_runs_the_plugin(tiny_model_dir, tmp_path, capsys):  # noqa: F811
    data = fx.write_ai2d_hub(tmp_path / "ai2d")
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "ai2d_inf_llava.yaml").write_text(
        textwrap.dedent(
            f"""\
            task: ai2d_inf_llava
            dataset_path: parquet
            dataset_kwargs:
              data_files:
                test: {data}
            test_split: test
            output_type: generate_until
            doc_to_visual: !function utils.doc_to_visual
            doc_to_text: !function utils.doc_to_text
            doc_to_target: !function utils.doc_to_target
            generation_kwargs:
              max_new_tokens: 3
              temperature: 0
              do_sample: false
            process_results: !function utils.process_results
            metric_list:
              - metric: correct
                aggregation: mean
                higher_is_better: true
            """
        )
    )
    (task_dir / "utils.py").write_text(
        textwrap.dedent(
            """\
            from inf_llava.eval import get_benchmark

            AI2D = get_benchmark("ai2d")


            def doc_to_visual(doc):
                return [doc["image"].convert("RGB")]


            def doc_to_text(doc):
                return AI2D.build_prompt(doc)


            def doc_to_target(doc):
                return AI2D.target(doc)


            def process_results(doc, results):
                return {"correct": AI2D.process_result(doc, results[0])["correct"]}
            """
        )
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    command = [sys.executable, "-m", "lmms_eval", "--model", "inf_llava", "--model_args",
               f"pretrained={tiny_model_dir}", "--tasks", "ai2d_inf_llava", "--include_path", str(task_dir),
               "--batch_size", "2", "--output_path", str(tmp_path / "lmms"), "--log_samples"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    [samples_file] = glob.glob(str(tmp_path / "lmms" / "*" / "*_samples_ai2d_inf_llava.jsonl"))
    lmms_answers = {row["doc_id"]: row["filtered_resps"][0] for row in map(json.loads, open(samples_file))}

    out = tmp_path / "ours"
    args = ["eval", "run", "--benchmark", "ai2d", "--data", str(data), "--model", str(tiny_model_dir)]
    assert main([*args, "--max-new-tokens", "3", "--output", str(out), "--no-progress"]) == 0
    ours = {int(row["key"]): row["prediction"] for row in map(json.loads, open(out / "predictions.jsonl"))}
    assert lmms_answers == ours and len(ours) == 3
    [results_file] = glob.glob(str(tmp_path / "lmms" / "*" / "*_results.json"))
    lmms_score = json.load(open(results_file))["results"]["ai2d_inf_llava"]["correct,none"]
    assert 100 * lmms_score == pytest.approx(json.load(open(out / "metrics.json"))["score"])
    assert get_benchmark("ai2d").max_new_tokens == 16  # (the task above shortens it for speed)
