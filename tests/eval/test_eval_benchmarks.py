"""Each benchmark's pure functions on rows as distributed: exact prompts, per-row scoring, aggregation."""

import math

import pytest

from inf_llava.eval import BENCHMARKS, get_benchmark
from inf_llava.eval.prompting import render_eval_prompt
from inf_llava.processing.templates import get_template

LETTER = "Answer with the option's letter from the given choices directly."
PHRASE = "Answer the question using a single word or phrase."


def test_registry():
    assert BENCHMARKS == (
        "scienceqa_img",
        "okvqa",
        "seedbench",
        "mmbench_en",
        "mmbench_cn",
        "ai2d",
        "llava_bench_wild",
        "mmmu_val",
    )
    for name in BENCHMARKS:
        benchmark = get_benchmark(name)
        assert benchmark.name == name and callable(benchmark.build_prompt) and callable(benchmark.aggregate)
    with pytest.raises(ValueError, match="unknown benchmark 'mmbench'; available: scienceqa_img"):
        get_benchmark("mmbench")
    with pytest.raises(ValueError, match="unknown scoring profile"):
        get_benchmark("ai2d", profile="lmms_eval_2099")


# ---- MMBench -----------------------------------------------------------------------------------------------------
MMB_DOC = {
    "index": "241",  # the HF 'en' config once stored it as a string
    "question": "What is shown?",
    "hint": None,
    "A": "cat",
    "B": "dog",
    "C": float("nan"),
    "D": "nan",
    "answer": "B",
    "category": "object",
    "L2-category": "perception",
}


def test_mmbench_prompts():
    en, cn = get_benchmark("mmbench_en"), get_benchmark("mmbench_cn")
    options = "There are several options:\nA. cat\nB. dog"
    assert en.build_prompt(MMB_DOC) == f"What is shown? {options}\n\n{LETTER}"
    assert en.build_prompt({**MMB_DOC, "hint": "Look."}) == f"Look. What is shown? {options}\n\n{LETTER}"
    assert en.build_prompt({**MMB_DOC, "hint": "nan"}) == f"What is shown? {options}\n\n{LETTER}"
    # CN: the English options header, and only a null hint is skipped (a literal "nan" is printed).
    assert (
        cn.build_prompt({**MMB_DOC, "hint": "nan"})
        == f"nan What is shown? {options}\n\n请直接使用所提供的选项字母作为答案回答。"
    )
    assert en.build_prompt({**MMB_DOC, "E": "bird"}).endswith("B. dog\nE. bird\n\n" + LETTER)
    assert en.max_new_tokens == 1024 and cn.max_new_tokens == 256


def test_mmbench_process_and_circular_aggregate():
    bench = get_benchmark("mmbench_en")
    copy = {**MMB_DOC, "index": 1000241, "A": "dog", "B": "cat", "answer": "A", "l2-category": "perception"}
    copy.pop("L2-category")  # the TSV spelling
    main_row = bench.process_result(MMB_DOC, "  B. dog\n")
    assert main_row["pred"] == "B" and main_row["index"] == 241 and main_row["prediction"] == "B. dog"
    right = bench.aggregate([main_row, bench.process_result(copy, "It is a dog.")])
    assert right["score"] == 100.0 and right["questions"] == 1 and right["rows"] == 2
    assert right["categories"] == {"object": 100.0} and right["l2_categories"] == {"perception": 100.0}
    wrong = bench.aggregate([main_row, bench.process_result(copy, "B")])
    assert wrong["score"] == 0.0
    unresolved = bench.aggregate([main_row, bench.process_result(copy, "no idea")])
    assert unresolved["score"] == 0.0 and unresolved["unresolved"] == 1
    judged = bench.aggregate([main_row, bench.process_result(copy, "no idea")], judge=lambda row: "A")
    assert judged["score"] == 100.0 and judged["judged"] == 1
    with pytest.raises(ValueError, match="no ground-truth answer"):
        bench.aggregate([bench.process_result({**MMB_DOC, "answer": None}, "B")])


# ---- SEED-Bench --------------------------------------------------------------------------------------------------
SEED_DOC = {
    "question": "What is it?",
    "choice_a": "a cat",
    "choice_b": "a dog",
    "choice_c": "a car",
    "choice_d": "a tree",
    "answer": "C",
    "question_id": "7",
    "data_type": "image",
    "question_type_id": 2,
}


def test_seed_prompt_and_scores():
    bench = get_benchmark("seedbench")
    assert bench.build_prompt(SEED_DOC) == f"What is it?\nA. a cat\nB. a dog\nC. a car\nD. a tree\n{LETTER}"
    results = [
        bench.process_result(SEED_DOC, "C. a car"),
        bench.process_result({**SEED_DOC, "question_type_id": 3}, "The answer is C"),
        bench.process_result({**SEED_DOC, "data_type": "video"}, "C"),
    ]
    metrics = bench.aggregate(results)
    assert metrics["score"] == metrics["seed_image"] == 50.0
    assert metrics["seed_video"] == 100.0 and metrics["seed_all"] == pytest.approx(200 / 3)
    assert metrics["question_types"] == {"2": 100.0, "3": 0.0}
    official = get_benchmark("seedbench", profile="official")
    assert official.process_result(SEED_DOC, "C. a car")["correct"] == 0
    assert official.process_result(SEED_DOC, "C")["correct"] == 1
    assert not bench.include({**SEED_DOC, "data_type": "video"})


# ---- AI2D --------------------------------------------------------------------------------------------------------
def test_ai2d():
    bench = get_benchmark("ai2d")
    doc = {"question": "Which?", "options": ["x", "y", "z"], "answer": "2"}
    assert bench.build_prompt(doc) == f"Which?\nA. x\nB. y\nC. z\n{LETTER}"
    assert bench.max_new_tokens == 16
    results = [bench.process_result(doc, p) for p in ["C. z", "(C)", "c", "C z"]]
    assert [r["correct"] for r in results] == [1, 1, 1, 0]
    assert bench.aggregate(results)["score"] == 75.0


# ---- ScienceQA ---------------------------------------------------------------------------------------------------
def test_scienceqa():
    bench = get_benchmark("scienceqa_img")
    doc = {"question": "Which?", "choices": ["a", "b"], "answer": 1, "hint": "", "subject": "natural science"}
    assert bench.build_prompt(doc) == f"Which?\nA. a\nB. b\n{LETTER}"
    assert bench.build_prompt({**doc, "hint": "Hot."}) == f"Context: Hot.\nWhich?\nA. a\nB. b\n{LETTER}"
    assert [bench.process_result(doc, p)["correct"] for p in ["B", "b", "B. b"]] == [1, 0, 1]
    head = get_benchmark("scienceqa_img", profile="lmms_eval_head")
    assert head.process_result(doc, "b")["correct"] == 1
    llava = get_benchmark("scienceqa_img", profile="official")
    assert llava.process_result(doc, "The answer is B.")["correct"] == 1
    metrics = bench.aggregate([bench.process_result(doc, "B"), bench.process_result({**doc, "subject": "x"}, "A")])
    assert metrics["score"] == 50.0 and metrics["subjects"] == {"natural science": 100.0, "x": 0.0}
    assert not bench.include({**doc, "image": None}) and bench.include({**doc, "image": "image.png"})


# ---- MMMU --------------------------------------------------------------------------------------------------------
MMMU_MC = {
    "id": "validation_Art_Theory_12",
    "question": "Which style is <image 2>, unlike <image 1>?",
    "options": "['Baroque', '<image 3>', 'Gothic']",
    "answer": "B",
    "question_type": "multiple-choice",
    "image_1": "one",
    "image_2": "two",
    "image_3": "three",
    "image_4": None,
}


def test_mmmu_prompt_and_images():
    bench = get_benchmark("mmmu_val")
    assert bench.build_prompt(MMMU_MC) == (
        "Which style is <image 2>, unlike <image 1>?\nA. Baroque\nB. <image 3>\nC. Gothic\n\n" + LETTER
    )
    assert bench.image_refs(MMMU_MC) == ["one", "two", "three"]  # unique, sorted, options included
    open_doc = {**MMMU_MC, "options": "[]", "question_type": "open", "question": "x? <image 1>"}
    assert bench.build_prompt(open_doc) == f"x? <image 1>\n\n{PHRASE}"
    with pytest.raises(ValueError, match="image_2"):
        bench.image_refs({**MMMU_MC, "image_2": None})


def test_mmmu_scoring_and_aggregate():
    bench = get_benchmark("mmmu_val")
    rows = [bench.process_result(MMMU_MC, "(B)"), bench.process_result(MMMU_MC, "Gothic, clearly, is the best style")]
    assert [r["correct"] for r in rows] == [1, 0] and rows[1]["parsed_pred"] == "C"
    open_doc = {**MMMU_MC, "id": "validation_Math_15", "options": "[]", "question_type": "open"}
    rows.append(bench.process_result({**open_doc, "answer": "['24/7', '3.429']"}, "So the ratio is 3.429."))
    rows.append(bench.process_result({**open_doc, "answer": "5"}, "6"))
    assert rows[2]["correct"] == 1 and rows[3]["correct"] == 0
    metrics = bench.aggregate(rows)
    assert metrics["score"] == 50.0 and metrics["questions"] == 4
    assert metrics["subjects"] == {"Art_Theory": {"num": 2, "acc": 0.5}, "Math": {"num": 2, "acc": 0.5}}
    assert metrics["domains"]["Art and Design"] == {"num": 2, "acc": 0.5}
    thirds = [bench.process_result(MMMU_MC, p) for p in ["B", "A", "A"]]
    assert bench.aggregate(thirds)["score"] == 33.333  # acc rounded to 5 decimals, then x 100
    assert bench.aggregate([bench.process_result(MMMU_MC, "???")])["random_fallbacks"] == 1


# ---- OK-VQA ------------------------------------------------------------------------------------------------------
def test_okvqa():
    bench = get_benchmark("okvqa")
    doc = {"question_id": "5", "question": "What sport?", "answers": ["tennis"] * 2 + ["golf"] * 8}
    assert bench.build_prompt(doc) == (
        "What sport?\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n" + PHRASE
    )
    tennis, golf = bench.process_result(doc, "Tennis."), bench.process_result(doc, "the golf")
    assert tennis["pred"] == "tennis" and tennis["accuracy"] == pytest.approx(0.6)
    assert golf["accuracy"] == 1.0
    assert bench.aggregate([tennis, golf])["score"] == pytest.approx(80.0)
    dicts = {**doc, "answers": [{"answer": a, "answer_id": i} for i, a in enumerate(doc["answers"])]}
    assert bench.process_result(dicts, "Tennis.")["accuracy"] == pytest.approx(0.6)
    official = get_benchmark("okvqa", profile="official")
    assert official.process_result({**doc, "answers": ["Yes"] * 10}, "yes")["accuracy"] == 0.0


# ---- LLaVA-Bench -------------------------------------------------------------------------------------------------
def test_llava_bench():
    bench = get_benchmark("llava_bench_wild")
    doc = {"question_id": 1, "question": "Why?", "caption": "c", "gpt_answer": "ref", "category": "conv"}
    assert bench.build_prompt(doc) == "Why?"
    official = {"question_id": 1, "text": "Q?", "caption": "c", "gpt_answer": "ref", "category": "conv"}
    assert bench.build_prompt(official) == "Q?"  # questions.jsonl calls it 'text'
    assert bench.parse_score("7 8\nok") == [7.0, 8.0]
    rows = [
        bench.process_result({**doc, "review": "8 6\n..."}, "x"),
        bench.process_result({**doc, "category": "detail", "review": "6 6"}, "x"),
        bench.process_result({**doc, "category": "complex", "review": "oops"}, "x"),
        bench.process_result({**doc, "category": "complex"}, "x"),
    ]
    assert rows[2]["parse_failed"] and rows[3]["review_missing"]
    metrics = bench.aggregate(rows)
    # means: reference (8 + 6 - 1 - 1) / 4 = 3, model (6 + 6 - 1 - 1) / 4 = 2.5
    assert metrics["score"] == round(2.5 / 3 * 100, 1) == 83.3
    assert metrics["categories"] == {"conv": 75.0, "detail": 100.0, "complex": 100.0}
    assert metrics["parse_failures"] == 1 and metrics["missing_reviews"] == 1
    assert metrics["reference_mean_x10"] == 30.0 and metrics["model_mean_x10"] == 25.0
    content = bench.judge_content({**doc, "caption": ["a", "b"]}, "  my answer \n")
    assert "[Context]\na\nb\n\n[Question]\nWhy?\n\n[Assistant 1]\nref\n\n" in content
    assert "[Assistant 2]\nmy answer\n\n" in content


# ---- the full prompt ---------------------------------------------------------------------------------------------
def test_eval_prompt_matches_lmms_eval_llava_wrapper():
    template = get_template("llama3")
    one = render_eval_prompt(template, "What is this?", 1)
    assert one == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat between a curious user and an "
        "artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's "
        "questions."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert "<|end_header_id|>\n\n<image> <image>\n Q<|eot_id|>" in render_eval_prompt(template, " Q", 2)
    assert "<|end_header_id|>\n\nQ<|eot_id|>" in render_eval_prompt(template, "Q", 0)
    with pytest.raises(ValueError, match="captions only"):
        render_eval_prompt(get_template("plain"), "Q", 1)


def test_process_result_takes_raw_output():
    """lmms-eval strips outputs before scoring (AI2D: after its filter); process_result does it itself."""
    assert get_benchmark("seedbench").process_result(SEED_DOC, "\n C")["correct"] == 1
    doc = {"question": "q", "options": ["x", "y", "z"], "answer": "2"}
    assert get_benchmark("ai2d").process_result(doc, " C.\n")["correct"] == 1
    assert not math.isnan(get_benchmark("okvqa").process_result({"question": "q", "answers": ["a"]}, " a ")["accuracy"])
