"""MMBench answer matching and circular evaluation, as lmms-eval (July 2024) scores ``mmbench_*_dev``
(spec evaluation.md section 1.3).

:func:`can_infer` is the heuristic pass: a lone option letter among the whitespace tokens (candidates A-E, with the
"A may be an article" exception), then twelve prefix/suffix forms such as ``B.`` or ``(C)``, then a unique
option-text substring. :func:`circular_eval` groups the circular copies of a question (``index % 1_000_000``) and
needs every copy right; a copy the heuristics cannot resolve goes to an optional judge and otherwise counts as wrong
(the deterministic "exact matching" policy; lmms-eval's random-letter fallback is not reproduced).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

CIRCULAR_OFFSET = 1_000_000
CANDIDATE_LETTERS = "ABCDE"  # can_infer_option(num_choice=5): E is a candidate even when it is not an option
TEXT_MATCH_LETTERS = "ABCD"  # build_choices: only A-D take part in option-text matching
FAILED_API_MARKER = "Failed to obtain answer via API"
_AFFIXES = (
    ("", "."),
    ("", ","),
    ("", ":"),
    ("", ")"),
    ("", ")."),
    ("(", ")"),
    ("(", ")."),
    (":", ""),
    (":", ","),
    (":", "."),
    (":", ")"),
    (":", ")."),
)


def is_missing(value: Any) -> bool:
    """None, a float NaN (pandas' empty cell) or the literal string ``"nan"`` of some uploads."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == "nan"


def option_texts(doc: Mapping[str, Any], letters: str = CANDIDATE_LETTERS) -> dict[str, Any]:
    """The present options of a row, by letter (missing / NaN / "nan" ones left out)."""
    return {letter: doc[letter] for letter in letters if letter in doc and not is_missing(doc[letter])}


def can_infer_option(answer: str) -> str | None:
    """A letter written as a letter (``B``, ``B.``, ``(B)``, ``:B`` ...), or None."""
    if FAILED_API_MARKER in answer:
        return None
    tokens = [token.strip() for token in answer.split()]

    def count(prefix: str = "", suffix: str = "") -> int:
        return sum(1 for letter in CANDIDATE_LETTERS if prefix + letter + suffix in tokens)

    if count() == 1 and not ("A" in tokens and len(tokens) > 3):
        for letter in CANDIDATE_LETTERS:
            if letter in tokens:
                return letter
    for prefix, suffix in _AFFIXES:
        if count(prefix, suffix) == 1:
            for letter in CANDIDATE_LETTERS:
                if prefix + letter + suffix in tokens:
                    return letter
    return None


def can_infer_text(answer: str, choices: Mapping[str, Any]) -> str | None:
    """The one option (A-D) whose lower-cased text is a substring of the lower-cased answer, or None."""
    answer = answer.lower()
    found = [letter for letter, text in choices.items() if str(text).lower() in answer]
    return found[0] if len(found) == 1 else None


def can_infer(answer: str, choices: Mapping[str, Any]) -> str | None:
    """lmms-eval ``MMBench_Evaluator.can_infer``: letter forms first, then option text."""
    return can_infer_option(answer) or can_infer_text(answer, choices)


# A judge maps one unresolved row (its ``question``, ``options``, ``prediction``) to a letter, or None.
Judge = Callable[[Mapping[str, Any]], "str | None"]


def circular_eval(rows: Iterable[Mapping[str, Any]], judge: Judge | None = None) -> dict[str, Any]:
    """Circular evaluation over per-row results.

    Each row needs ``index`` (int), ``answer`` (the letter of *that* copy), ``pred`` (the heuristic letter or None)
    and optionally ``category`` / ``l2_category``. Returns per-question hits plus counts: ``unresolved`` rows that
    reached the second pass without a judge answer, and ``orphan_rows`` whose main question (index < 1e6) is absent
    (lmms-eval ignores those too).
    """
    by_index: dict[int, Mapping[str, Any]] = {}
    for row in rows:
        index = int(row["index"])
        if index in by_index:
            raise ValueError(f"MMBench index {index} appears twice in the results")
        by_index[index] = row
    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for index in sorted(by_index):
        groups[index % CIRCULAR_OFFSET].append(by_index[index])
    main = sorted(index for index in by_index if index < CIRCULAR_OFFSET)
    hits: dict[int, int] = {}
    unresolved = judged = 0
    for index in main:
        group = groups[index]
        hit = 1
        for row in group:  # pass 1: a heuristic letter that is wrong fails the question at once
            if row["pred"] is not None and row["pred"] != row["answer"]:
                hit = 0
                break
        if hit:
            for row in group:  # pass 2: rows the heuristics could not resolve
                if row["pred"] is not None:
                    continue
                letter = judge(row) if judge is not None else None
                if judge is not None:
                    judged += 1
                if letter is None:
                    unresolved += 1
                if letter != row["answer"]:
                    hit = 0
                    break
        hits[index] = hit
    orphans = sum(len(group) for key, group in groups.items() if key not in by_index)
    return {"hits": hits, "unresolved": unresolved, "judged": judged, "orphan_rows": orphans, "rows": by_index}


def hit_rates(hits: Mapping[int, int], labels: Mapping[int, Any]) -> dict[str, float]:
    """Accuracy x 100 per label value (category / L2 category) over the main questions."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, hit in hits.items():
        label = labels.get(index)
        groups["uncategorized" if is_missing(label) else str(label)].append(hit)
    return {label: 100.0 * sum(values) / len(values) for label, values in sorted(groups.items())}


# ---- the LLM-judge fallback prompt (used only when a judge is configured) -----------------------------------------
def judge_options_string(choices: Sequence[Any]) -> str:
    """``build_option_str``: contiguous options from A, each ``"X. text\\n"`` after a header with a trailing space."""
    text = "There are several options: \n"
    for letter, option in zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", choices):
        text += f"{letter}. {option}\n"
    return text


def contiguous_options(doc: Mapping[str, Any]) -> list[Any]:
    """``extract_options``: A, B, C, D in order, stopping at the first missing one."""
    options = []
    for letter in TEXT_MATCH_LETTERS:
        if letter not in doc or is_missing(doc[letter]):
            break
        options.append(doc[letter])
    return options


def judge_prompt(question: str, options: str, prediction: str) -> str:
    """The answer-matching prompt sent to the judge (``gpt-3.5-turbo-0613`` upstream)."""
    return (
        "You are an AI assistant who will help me to match an answer with several options of a single-choice "
        "question. You are provided with a question, several options, and an answer, and you need to find which "
        "option is most similar to the answer. If the meaning of all options are significantly different from the "
        "answer, output E. Your should output a single uppercase character in A, B, C, D (if they are valid "
        "options), and E. \n"
        "Example 1: \n"
        "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
        "Answer: a cute teddy bear\nYour output: A\n"
        "Example 2: \n"
        "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
        "Answer: Spider\nYour output: E\n"
        "Example 3: \n"
        f"Question: {question}?\nOptions: {options}\nAnswer: {prediction}\nYour output: "
    )


__all__ = [
    "CIRCULAR_OFFSET",
    "Judge",
    "can_infer",
    "can_infer_option",
    "can_infer_text",
    "circular_eval",
    "contiguous_options",
    "hit_rates",
    "is_missing",
    "judge_options_string",
    "judge_prompt",
    "option_texts",
]
