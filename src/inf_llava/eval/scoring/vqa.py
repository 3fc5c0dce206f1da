"""VQA answer normalisation and the 10-choose-9 accuracy (spec evaluation.md section 6.3).

Two variants, both reproduced quirk for quirk:

- :func:`evalai_normalize` is the EvalAI / MMF ``EvalAIAnswerProcessor`` that lmms-eval (the canonical protocol)
  applies to the prediction and to every ground-truth answer: lower-case, delete ``,`` and ``?``, split ``'s``, the
  punctuation pass (whose conditions test the *input* text), the mistyped period regex (it removes every ``.`` not
  followed by a digit, at most 32 of them, because ``re.UNICODE`` lands in the ``count`` argument), number words up
  to ten, articles and the contraction table.
- :func:`official_vqa_accuracy` is GT-Vision-Lab's ``vqaEval.py``: no up-front lower-casing, comma handling by the
  digit-comma-digit rule, and normalisation only when the ten answers are not all identical.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

# The 21 punctuation marks, in the order the pass visits them. ``'`` and ``:`` are deliberately absent.
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
NUMBER_MAP = MappingProxyType(
    {
        "none": "0",
        "zero": "0",
        "one": "1",
        "two": "2",
        "three": "3",
        "four": "4",
        "five": "5",
        "six": "6",
        "seven": "7",
        "eight": "8",
        "nine": "9",
        "ten": "10",
    }
)
ARTICLES = frozenset({"a", "an", "the"})
# "(?!<=\d)" is a typo for a look-behind: as written it is a look-ahead that never blocks, so the pattern removes
# every period that is not followed by a digit.
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")
OFFICIAL_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
# The upstream call is ``PERIOD_STRIP.sub("", text, re.UNICODE)``: the flag's value (32) is the replacement count.
_PERIOD_STRIP_COUNT = int(re.UNICODE)

# 120 entries, as in every VQA evaluator. Keys with capitals can never match (tokens are lower-cased first).
CONTRACTIONS = MappingProxyType(
    {
        "aint": "ain't",
        "arent": "aren't",
        "cant": "can't",
        "couldve": "could've",
        "couldnt": "couldn't",
        "couldn'tve": "couldn't've",
        "couldnt've": "couldn't've",
        "didnt": "didn't",
        "doesnt": "doesn't",
        "dont": "don't",
        "hadnt": "hadn't",
        "hadnt've": "hadn't've",
        "hadn'tve": "hadn't've",
        "hasnt": "hasn't",
        "havent": "haven't",
        "hed": "he'd",
        "hed've": "he'd've",
        "he'dve": "he'd've",
        "hes": "he's",
        "howd": "how'd",
        "howll": "how'll",
        "hows": "how's",
        "Id've": "I'd've",
        "I'dve": "I'd've",
        "Im": "I'm",
        "Ive": "I've",
        "isnt": "isn't",
        "itd": "it'd",
        "itd've": "it'd've",
        "it'dve": "it'd've",
        "itll": "it'll",
        "let's": "let's",
        "maam": "ma'am",
        "mightnt": "mightn't",
        "mightnt've": "mightn't've",
        "mightn'tve": "mightn't've",
        "mightve": "might've",
        "mustnt": "mustn't",
        "mustve": "must've",
        "neednt": "needn't",
        "notve": "not've",
        "oclock": "o'clock",
        "oughtnt": "oughtn't",
        "ow's'at": "'ow's'at",
        "'ows'at": "'ow's'at",
        "'ow'sat": "'ow's'at",
        "shant": "shan't",
        "shed've": "she'd've",
        "she'dve": "she'd've",
        "she's": "she's",
        "shouldve": "should've",
        "shouldnt": "shouldn't",
        "shouldnt've": "shouldn't've",
        "shouldn'tve": "shouldn't've",
        "somebody'd": "somebodyd",
        "somebodyd've": "somebody'd've",
        "somebody'dve": "somebody'd've",
        "somebodyll": "somebody'll",
        "somebodys": "somebody's",
        "someoned": "someone'd",
        "someoned've": "someone'd've",
        "someone'dve": "someone'd've",
        "someonell": "someone'll",
        "someones": "someone's",
        "somethingd": "something'd",
        "somethingd've": "something'd've",
        "something'dve": "something'd've",
        "somethingll": "something'll",
        "thats": "that's",
        "thered": "there'd",
        "thered've": "there'd've",
        "there'dve": "there'd've",
        "therere": "there're",
        "theres": "there's",
        "theyd": "they'd",
        "theyd've": "they'd've",
        "they'dve": "they'd've",
        "theyll": "they'll",
        "theyre": "they're",
        "theyve": "they've",
        "twas": "'twas",
        "wasnt": "wasn't",
        "wed've": "we'd've",
        "we'dve": "we'd've",
        "weve": "we've",
        "werent": "weren't",
        "whatll": "what'll",
        "whatre": "what're",
        "whats": "what's",
        "whatve": "what've",
        "whens": "when's",
        "whered": "where'd",
        "wheres": "where's",
        "whereve": "where've",
        "whod": "who'd",
        "whod've": "who'd've",
        "who'dve": "who'd've",
        "wholl": "who'll",
        "whos": "who's",
        "whove": "who've",
        "whyll": "why'll",
        "whyre": "why're",
        "whys": "why's",
        "wont": "won't",
        "wouldve": "would've",
        "wouldnt": "wouldn't",
        "wouldnt've": "wouldn't've",
        "wouldn'tve": "wouldn't've",
        "yall": "y'all",
        "yall'll": "y'all'll",
        "y'allll": "y'all'll",
        "yall'd've": "y'all'd've",
        "y'alld've": "y'all'd've",
        "y'all'dve": "y'all'd've",
        "youd": "you'd",
        "youd've": "you'd've",
        "you'dve": "you'd've",
        "youll": "you'll",
        "youre": "you're",
        "youve": "you've",
    }
)


def process_punctuation(text: str, comma_strip: re.Pattern[str] = EVALAI_COMMA_STRIP) -> str:
    """Delete or space out each punctuation mark, then drop periods not followed by a digit (at most 32).

    A mark is deleted when it touches a space *in the input text* (or ``comma_strip`` matches the input), else it
    becomes a space.
    """
    out = text
    comma_hit = comma_strip.search(text) is not None
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or comma_hit:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return PERIOD_STRIP.sub("", out, count=_PERIOD_STRIP_COUNT)


def process_digit_article(text: str) -> str:
    """Lower-case, map number words (whole tokens, up to ten), drop articles, expand contractions, single-space."""
    words = [NUMBER_MAP.get(word, word) for word in text.lower().split()]
    words = [word for word in words if word not in ARTICLES]
    return " ".join(CONTRACTIONS.get(word, word) for word in words)


def evalai_normalize(answer: str) -> str:
    """lmms-eval's ``EvalAIAnswerProcessor()(answer)``."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))


def answer_strings(answers: Sequence[Any]) -> list[str]:
    """Ground-truth answers as strings: the HF release's list of strings or the official list of answer dicts."""
    out = []
    for answer in answers:
        if isinstance(answer, Mapping):
            answer = answer.get("answer")
        if not isinstance(answer, str):
            raise ValueError(f"a VQA ground-truth answer must be a string or a dict with 'answer', got {answer!r}")
        out.append(answer)
    return out


def leave_one_out_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """Mean over i of ``min(1, #{j != i : answers[j] == prediction} / 3)`` (answers are not de-duplicated).

    Averaged with :func:`statistics.mean` (exact rational arithmetic), as lmms-eval does.
    """
    if not answers:
        return 0.0
    matches = sum(1 for answer in answers if answer == prediction)
    per_answer = [min(1.0, float(matches - (answer == prediction)) / 3) for answer in answers]
    return statistics.mean(per_answer)


def evalai_accuracy(prediction: str, answers: Sequence[Any]) -> tuple[float, str]:
    """Canonical (lmms-eval / EvalAI) VQA accuracy: both sides normalised, always. Returns (accuracy, normalised)."""
    normalized = evalai_normalize(prediction)
    return leave_one_out_accuracy(normalized, [evalai_normalize(a) for a in answer_strings(answers)]), normalized


def official_vqa_accuracy(prediction: str, answers: Sequence[Any]) -> tuple[float, str]:
    """GT-Vision-Lab ``vqaEval.py``: normalise only when the answers are not all identical; otherwise compare the
    raw stripped prediction, case-sensitively. The mean is a plain float sum / count, as upstream."""
    gts = [_clean(a) for a in answer_strings(answers)]
    result = _clean(prediction)
    if len(set(gts)) > 1:
        gts = [_official_normalize(a) for a in gts]
        result = _official_normalize(result)
    if not gts:
        return 0.0, result
    matches = sum(1 for answer in gts if answer == result)
    per_answer = [min(1.0, float(matches - (answer == result)) / 3) for answer in gts]
    return float(sum(per_answer)) / len(per_answer), result


def _clean(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def _official_normalize(text: str) -> str:
    return process_digit_article(process_punctuation(text, OFFICIAL_COMMA_STRIP))


__all__ = [
    "ARTICLES",
    "CONTRACTIONS",
    "NUMBER_MAP",
    "PUNCTUATION",
    "answer_strings",
    "evalai_accuracy",
    "evalai_normalize",
    "leave_one_out_accuracy",
    "official_vqa_accuracy",
    "process_digit_article",
    "process_punctuation",
]
