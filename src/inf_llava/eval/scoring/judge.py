"""LLaVA-Bench (In-the-Wild) GPT-judge protocol: the review prompt, score parsing and the relative score
(spec evaluation.md section 7.3; LLaVA ``eval_gpt_review_bench.py`` / ``summarize_gpt_review.py``, identical in
lmms-eval and VLMEvalKit).

Pure functions only: the HTTP call to a judge lives in :mod:`inf_llava.eval.judge_client`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

JUDGE_SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
JUDGE_ROLE = "Assistant"
JUDGE_TEMPERATURE = 0.2
JUDGE_MAX_TOKENS = 1024
PARSE_FAILURE = (-1.0, -1.0)
# One rule text serves llava_bench_conv, llava_bench_detail and llava_bench_complex. Note "image. \n".
RULE_PROMPT = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above. The user asks the question on observing an image. For your reference, the visual "
    "content in the image is represented with a few sentences describing the image. \nPlease rate the helpfulness, "
    "relevance, accuracy, level of details of their responses. Each assistant receives an overall score on a scale "
    "of 1 to 10, where a higher score indicates better overall performance.\nPlease first output a single line "
    "containing only two values indicating the scores for Assistant 1 and 2, respectively. The two scores are "
    "separated by a space.\nIn the subsequent line, please provide a comprehensive explanation of your evaluation, "
    "avoiding any potential bias and ensuring that the order in which the responses were presented does not affect "
    "your judgment."
)


def caption_text(caption: Any) -> str:
    """The context block: a list of captions joined by newlines, or the caption string itself."""
    if isinstance(caption, (list, tuple)):
        return "\n".join(str(c) for c in caption)
    return "" if caption is None else str(caption)


RULE_CATEGORIES = ("conv", "detail", "complex")


def review_content(caption: Any, question: str, reference: str, answer: str, category: str) -> str:
    """The judge's user message; the GPT-4 reference is always Assistant 1, the model Assistant 2.

    As upstream, a category without a rule (anything but conv / detail / complex) gets role ``user`` and an empty
    rule prompt.
    """
    known = category in RULE_CATEGORIES
    role, rule = (JUDGE_ROLE, RULE_PROMPT) if known else ("user", "")
    return (
        f"[Context]\n{caption_text(caption)}\n\n"
        f"[Question]\n{question}\n\n"
        f"[{role} 1]\n{reference}\n\n[End of {role} 1]\n\n"
        f"[{role} 2]\n{answer}\n\n[End of {role} 2]\n\n"
        f"[System]\n{rule}\n\n"
    )


def judge_messages(content: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": content}]


def parse_score(review: str) -> list[float]:
    """First line, commas to spaces, split on single spaces: exactly two floats, else ``[-1, -1]`` (kept in the
    averages, as upstream)."""
    try:
        parts = review.split("\n")[0].replace(",", " ").split(" ")
        if len(parts) == 2:
            return [float(parts[0]), float(parts[1])]
    except Exception:  # noqa: BLE001 - upstream turns any failure into the failure value
        pass
    return list(PARSE_FAILURE)


def relative_score(pairs: Sequence[Sequence[float]]) -> dict[str, float] | None:
    """Column means rounded to 3 decimals, then ``round(model / reference * 100, 1)``; None when undefined."""
    if not pairs:
        return None
    # numpy's (pairwise) mean, then Python's round on plain floats: exactly upstream's arithmetic.
    reference, model = (round(float(x), 3) for x in np.asarray(pairs, dtype=np.float64).mean(0).tolist())
    if reference == 0:
        return None
    return {"relative": round(model / reference * 100, 1), "reference_mean": reference, "model_mean": model}


__all__ = [
    "JUDGE_MAX_TOKENS",
    "JUDGE_SYSTEM",
    "JUDGE_TEMPERATURE",
    "PARSE_FAILURE",
    "RULE_CATEGORIES",
    "RULE_PROMPT",
    "caption_text",
    "judge_messages",
    "parse_score",
    "relative_score",
    "review_content",
]
