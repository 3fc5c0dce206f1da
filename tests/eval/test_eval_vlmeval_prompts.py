"""The VLMEvalKit rows -> benchmark docs mapping (no VLMEvalKit needed): the prompts are the benchmarks' own."""

import math

from inf_llava.eval import get_benchmark
from inf_llava.eval.benchmarks.okvqa import POST_PROMPT
from inf_llava.eval.vlmeval_plugin.prompts import benchmark_for, images_for, options_of, task_text


def test_mmmu_row_keeps_placeholders_and_picks_referenced_images():
    row = {
        "index": 7,
        "id": "validation_Art_1",
        "question": "Compare <image 2> with <image 1>.",
        "A": "left",
        "B": "right",
        "C": math.nan,
        "answer": "A",
        "image": ["b64-1", "b64-2", "b64-3"],
    }
    doc = {
        "id": "validation_Art_1",
        "question": row["question"],
        "options": "['left', 'right']",
        "question_type": "multiple-choice",
        "answer": "A",
    }
    assert task_text("MMMU_DEV_VAL", row) == get_benchmark("mmmu_val").build_prompt(doc)
    assert task_text("MMMU_DEV_VAL", row).startswith("Compare <image 2> with <image 1>.\nA. left\nB. right\n\n")
    assert images_for("MMMU_DEV_VAL", row, ["p1", "p2", "p3"]) == ["p1", "p2"]  # <image 3> is not referenced
    open_row = {**row, "A": math.nan, "B": math.nan}
    assert task_text("MMMU_DEV_VAL", open_row).endswith("\n\nAnswer the question using a single word or phrase.")


def test_open_ended_and_scienceqa_without_hint():
    assert task_text("OK-VQA", {"index": 1, "question": "What sport?"}) == "What sport?" + POST_PROMPT
    assert task_text("LLaVABench", {"index": 1, "question": "Describe it."}) == "Describe it."
    row = {"index": 0, "question": "Which?", "hint": math.nan, "A": "x", "B": "y", "answer": "B"}
    assert (
        task_text("ScienceQA_TEST", row)
        == "Which?\nA. x\nB. y\nAnswer with the option's letter from the given choices directly."
    )
    assert options_of({"A": "x", "B": math.nan, "C": "z"}) == [("A", "x")]  # options stop at the first empty one
    assert benchmark_for("MMBench_DEV_CN").name == "mmbench_cn" and benchmark_for("MME") is None
