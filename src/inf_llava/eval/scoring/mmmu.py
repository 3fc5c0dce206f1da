"""MMMU answer parsing and scoring (spec evaluation.md section 5.3).

Multiple choice follows lmms-eval (July 2024): ``(X)``, then ``X `` (letter + space, anywhere), then ``X.``, then
option text for responses longer than five words; several candidates resolve to the last occurrence. The official
MMMU variant (``" X "`` with spaces on both sides, no ``X.`` step) is available with ``official=True``. When nothing
matches, both upstreams pick a random letter; here the pick is a fresh ``random.Random(42)`` per response (the
official scorer's ``random.seed(42)``), so scores are reproducible, and the row records that the fallback was used.

Open answers follow ``parse_open_response`` / ``eval_open`` exactly (shared by MMMU and lmms-eval 2024).
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

FALLBACK_SEED = 42
_STRIP_CHARS = (",", ".", "!", "?", ";", ":", "'")
_KEY_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")
_TRIVIAL = (":", ",", ".", "!", "?", ";", ":", "'")
_NUMBER_WITH_COMMAS = re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_SCIENTIFIC = re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+")
_NUMBER_SIMPLE = re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])")

DOMAINS: Mapping[str, tuple[str, ...]] = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": (
        "Basic_Medical_Science",
        "Clinical_Medicine",
        "Diagnostics_and_Laboratory_Medicine",
        "Pharmacy",
        "Public_Health",
    ),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": (
        "Agriculture",
        "Architecture_and_Engineering",
        "Computer_Science",
        "Electronics",
        "Energy_and_Power",
        "Materials",
        "Mechanical_Engineering",
    ),
}


def parse_options(options: Any) -> list[Any]:
    """The ``options`` field: a string holding a Python list literal (HF release) or already a list."""
    if isinstance(options, str):
        value = ast.literal_eval(options)
    else:
        value = options
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"MMMU options must be a list, got {options!r}")
    return list(value)


def multi_choice_info(options: Sequence[Any]) -> tuple[dict[str, Any], list[str]]:
    """``index2ans`` (letter -> option) and ``all_choices`` (letters), from A."""
    letters = [chr(ord("A") + i) for i in range(len(options))]
    return dict(zip(letters, options)), letters


def parse_multi_choice(
    response: str, all_choices: Sequence[str], index2ans: Mapping[str, Any], *, official: bool = False
) -> tuple[str, bool]:
    """Parse a multiple-choice response. Returns ``(letter, used_random_fallback)``."""
    for char in _STRIP_CHARS:
        response = response.strip(char)
    response = " " + response + " "
    index_ans, with_brackets = True, False
    candidates = [c for c in all_choices if f"({c})" in response]
    if candidates:
        with_brackets = True
    if not candidates:
        form = " {} " if official else "{} "
        candidates = [c for c in all_choices if form.format(c) in response]
    if not candidates and not official:
        candidates = [c for c in all_choices if f"{c}." in response]
    if not candidates and len(response.split()) > 5:
        lowered = response.lower()
        candidates = [letter for letter, text in index2ans.items() if str(text).lower() in lowered]
        index_ans = not candidates
    if not candidates:
        if not all_choices:
            raise ValueError("an MMMU multiple-choice question needs at least one option")
        return random.Random(FALLBACK_SEED).choice(list(all_choices)), True
    if len(candidates) == 1:
        return candidates[0], False
    if index_ans and with_brackets:
        positions = [response.rfind(f"({c})") for c in candidates]
    elif index_ans:
        positions = [response.rfind(f" {c} ") for c in candidates]
    else:
        lowered = response.lower()
        positions = [lowered.rfind(str(index2ans[c]).lower()) for c in candidates]
    return candidates[positions.index(max(positions))], False  # np.argmax: the first of equal maxima


def extract_numbers(text: str) -> list[str]:
    """Comma-grouped, then scientific, then plain numbers (matches of each regex, concatenated in that order)."""
    return _NUMBER_WITH_COMMAS.findall(text) + _NUMBER_SCIENTIFIC.findall(text) + _NUMBER_SIMPLE.findall(text)


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize_str(text: str) -> list[str | float]:
    """A number -> ``[round(value, 2)]``; text -> lower-cased, and a single character padded both ways."""
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


def _key_subresponses(response: str) -> list[str]:
    response = response.strip().strip(".").lower()
    parts = re.split(r"\.\s(?=[A-Z])|\n", response)
    keys = []
    for index, part in enumerate(parts):
        indicators = _KEY_INDICATORS + (("=",) if index == len(parts) - 1 else ())
        shortest: str | None = None
        for indicator in indicators:
            if indicator in part:
                tail = part.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in _TRIVIAL:
            keys.append(shortest)
    return keys or [response]


def parse_open(response: str) -> list[str | float]:
    """``parse_open_response``: key sub-responses plus the numbers in them, normalised, de-duplicated.

    Returned sorted (strings, then numbers) so stored results are deterministic; scoring is order-independent.
    """
    keys = _key_subresponses(response)
    predictions: list[str] = list(keys)
    for key in keys:
        predictions.extend(extract_numbers(key))
    values: set[str | float] = set()
    for prediction in predictions:
        values.update(normalize_str(prediction))
    return sorted(values, key=lambda v: (isinstance(v, float), str(v) if isinstance(v, str) else v))


def gold_answers(answer: Any) -> Any:
    """The ``answer`` field; a string holding a list literal (3 open questions in validation) becomes the list.

    Deliberate deviation from lmms-eval 2024, which compares against the literal string and so can never match.
    """
    if isinstance(answer, str) and answer.startswith("["):
        try:
            value = ast.literal_eval(answer)
        except (ValueError, SyntaxError):
            return answer
        if isinstance(value, list):
            return [str(v) for v in value]
    return answer


def eval_multi_choice(gold: Any, prediction: str) -> bool:
    if isinstance(gold, list):
        return prediction in gold
    return gold == prediction


def eval_open(gold: Any, predictions: Sequence[str | float]) -> bool:
    """A string prediction is right if any normalised string gold is a substring; a number if it is in the golds."""
    golds: list[str | float] = []
    for answer in gold if isinstance(gold, list) else [gold]:
        golds.extend(normalize_str(str(answer)))
    for prediction in predictions:
        if isinstance(prediction, str):
            if any(isinstance(g, str) and g in prediction for g in golds):
                return True
        elif prediction in golds:
            return True
    return False


def subject_of(sample_id: str) -> str:
    """``validation_Art_Theory_12`` -> ``Art_Theory`` (lmms-eval ``extract_subset_name``)."""
    split = sample_id.split("_")[0]
    match = re.search(rf"^{re.escape(split)}_(.+?)_\d+$", sample_id)
    if not match:
        raise ValueError(f"MMMU id {sample_id!r} is not of the form <split>_<Subject>_<n>")
    return match.group(1)


__all__ = [
    "DOMAINS",
    "FALLBACK_SEED",
    "eval_multi_choice",
    "eval_open",
    "extract_numbers",
    "gold_answers",
    "multi_choice_info",
    "normalize_str",
    "parse_multi_choice",
    "parse_open",
    "parse_options",
    "subject_of",
]
