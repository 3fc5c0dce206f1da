"""Option-letter rules of the single-answer multiple-choice benchmarks: SEED-Bench, AI2D and ScienceQA
(spec evaluation.md sections 2.3, 3.3 and 4.3).

Every function takes the model's *raw* output and applies lmms-eval's ``strip()`` itself at the point where
lmms-eval does (for AI2D, after the regex filter), so callers never pre-process predictions.
"""

from __future__ import annotations

import re
import string

_PUNCTUATION_TABLE = str.maketrans("", "", string.punctuation)
# AI2D's MultiChoiceRegexFilter: case-sensitive, anchored at the start of the raw response.
AI2D_LETTER = re.compile(r"^\s*([A-Z])\.")
# LLaVA-1.5 eval_science_qa.py: the final "." is unescaped, so it matches any character.
LLAVA_SQA_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def option_letters(count: int) -> list[str]:
    """``["A", "B", ...]`` for ``count`` options (``chr(ord("A") + i)``, as every scorer builds them)."""
    return [chr(ord("A") + i) for i in range(count)]


def exact_match(
    prediction: str, reference: str, *, ignore_case: bool = False, ignore_punctuation: bool = False
) -> bool:
    """HF ``evaluate``'s ``exact_match`` for one pair: lower-case, then delete ``string.punctuation``; no strip."""
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        prediction, reference = prediction.translate(_PUNCTUATION_TABLE), reference.translate(_PUNCTUATION_TABLE)
    return prediction == reference


# ---- SEED-Bench --------------------------------------------------------------------------------------------------
def seed_first_character(prediction: str) -> str:
    """lmms-eval ``seed_process_result``: the stripped output, cut to its first character when longer."""
    pred = prediction.strip()
    return pred[0] if len(pred) > 1 else pred


def seed_correct(prediction: str, answer: str) -> bool:
    """First-character rule (intended: verbose answers are wrong), compared lower-cased and stripped."""
    return seed_first_character(prediction).lower().strip() == str(answer).lower().strip()


def seed_exact_correct(prediction: str, answer: str) -> bool:
    """LLaVA-1.5 ``convert_seed_for_submission.py``: the stripped output must equal the answer, nothing parsed."""
    return prediction.strip() == str(answer)


# ---- AI2D --------------------------------------------------------------------------------------------------------
def ai2d_filter(prediction: str) -> str:
    """The regex filter on the raw output (a leading ``X.`` becomes ``X``), then lmms-eval's strip."""
    match = AI2D_LETTER.match(prediction)
    return (match.group(1) if match else prediction).strip()


def ai2d_correct(prediction: str, target: str) -> bool:
    """Filter, strip, then exact match ignoring case and punctuation (whitespace is significant)."""
    return exact_match(ai2d_filter(prediction), target, ignore_case=True, ignore_punctuation=True)


# ---- ScienceQA ---------------------------------------------------------------------------------------------------
def sqa_correct_lmms_eval_2024(prediction: str, target: str) -> bool:
    """lmms-eval (July 2024) ``sqa_process_results``: exact letter, or ``X.`` with an upper-case X; case-sensitive."""
    pred = prediction.strip()
    if pred == target:
        return True
    if len(pred) >= 2 and pred[0].isupper() and pred[1] == ".":
        return pred[0] == target
    return False


def sqa_correct_lmms_eval_head(prediction: str, target: str) -> bool:
    """lmms-eval HEAD: both sides lower-cased, so a bare lower-case letter counts; ``x.`` still needs upper case."""
    pred = prediction.strip()
    if pred.lower() == target.strip().lower():
        return True
    if len(pred) >= 2 and pred[0].isupper() and pred[1] == ".":
        return pred[0].lower() == target.strip().lower()
    return False


def sqa_parse_llava(prediction: str, num_choices: int) -> str | None:
    """LLaVA-1.5 ``eval_science_qa.py`` answer parsing over options A-E; ``None`` when it fails."""
    options = option_letters(5)
    pred = prediction.strip()
    if pred in options:
        return pred
    if len(pred) >= 3 and pred[0] in options and pred[1:3] == ". ":
        return pred[0]
    found = LLAVA_SQA_ANSWER_IS.findall(pred)
    return found[0] if len(found) == 1 else None


def sqa_correct_llava(prediction: str, answer_index: int, num_choices: int) -> bool:
    parsed = sqa_parse_llava(prediction, num_choices)
    return parsed is not None and parsed in option_letters(num_choices) and ord(parsed) - ord("A") == answer_index


__all__ = [
    "ai2d_correct",
    "ai2d_filter",
    "exact_match",
    "option_letters",
    "seed_correct",
    "seed_exact_correct",
    "seed_first_character",
    "sqa_correct_llava",
    "sqa_correct_lmms_eval_2024",
    "sqa_correct_lmms_eval_head",
    "sqa_parse_llava",
]
