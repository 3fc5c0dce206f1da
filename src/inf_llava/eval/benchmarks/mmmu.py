"""MMMU validation (900 questions: 847 multiple choice, 53 open; spec evaluation.md section 5).

Prompts keep the ``<image k>`` placeholders verbatim (lmms-eval 2024); the images passed are the unique ``image_k``
referenced anywhere in question or options, sorted. The overall score is the instance-weighted accuracy, rounded to
five decimals as upstream, x 100. Profile ``official`` switches multiple-choice parsing to the MMMU repository's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..base import ANSWER_WITH_LETTER, ANSWER_WITH_PHRASE, Benchmark, HubSource, require_results
from ..scoring.letters import option_letters
from ..scoring.mmmu import (
    DOMAINS,
    eval_multi_choice,
    eval_open,
    gold_answers,
    multi_choice_info,
    parse_multi_choice,
    parse_open,
    parse_options,
    subject_of,
)

IMAGE_PLACEHOLDER = re.compile(r"<image \d+>")


class MMMU(Benchmark):
    name: ClassVar[str] = "mmmu_val"
    title: ClassVar[str] = "MMMU (val)"
    paper_column: ClassVar[str] = "MMMU"
    hub: ClassVar[HubSource] = HubSource("lmms-lab/MMMU", None, "validation")
    max_new_tokens: ClassVar[int] = 128
    id_field: ClassVar[str] = "id"
    required_fields: ClassVar[tuple[str, ...]] = ("id", "question", "options", "answer", "question_type")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        question = doc["question"]
        if doc["question_type"] == "multiple-choice":
            options = parse_options(doc["options"])
            lines = "\n".join(f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options))
            return f"{question}\n{lines}\n\n{ANSWER_WITH_LETTER}"
        return f"{question}\n\n{ANSWER_WITH_PHRASE}"

    def image_fields(self, doc: Mapping[str, Any]) -> list[str]:
        """``image_k`` fields referenced in the prompt: unique, sorted (as strings, like upstream)."""
        tokens = IMAGE_PLACEHOLDER.findall(self.build_prompt(doc))
        return sorted({token.strip("<>").replace(" ", "_") for token in tokens})

    def image_refs(self, doc: Mapping[str, Any]) -> list[Any]:
        refs = []
        for name in self.image_fields(doc):
            if doc.get(name) is None:
                raise ValueError(f"the prompt refers to <{name.replace('_', ' ')}> but field {name!r} is empty")
            refs.append(doc[name])
        return refs

    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        text = prediction.strip()
        gold = gold_answers(doc["answer"])
        result: dict[str, Any] = {
            "id": doc["id"],
            "subject": subject_of(str(doc["id"])),
            "question_type": doc["question_type"],
            "answer": gold,
        }
        if doc["question_type"] == "multiple-choice":
            index2ans, letters = multi_choice_info(parse_options(doc["options"]))
            parsed, fallback = parse_multi_choice(text, letters, index2ans, official=self.profile == "official")
            result.update(parsed_pred=parsed, random_fallback=fallback, correct=int(eval_multi_choice(gold, parsed)))
        else:
            parsed_open = parse_open(text)
            result.update(parsed_pred=parsed_open, random_fallback=False, correct=int(eval_open(gold, parsed_open)))
        return result

    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        require_results(results, self.name)
        per_subject: dict[str, list[int]] = {}
        for row in results:
            per_subject.setdefault(row["subject"], []).append(int(row["correct"]))
        subjects = {name: _accuracy(values) for name, values in sorted(per_subject.items())}
        domains = {}
        for domain, names in DOMAINS.items():
            present = [n for n in names if n in per_subject]
            if present:
                domains[domain] = _weighted(subjects, per_subject, present)
        overall = _weighted(subjects, per_subject, list(per_subject))
        return {
            "score": round(overall["acc"] * 100, 3),  # acc is already rounded to 5 decimals upstream
            "questions": overall["num"],
            "correct": sum(sum(v) for v in per_subject.values()),
            "random_fallbacks": sum(1 for r in results if r.get("random_fallback")),
            "domains": domains,
            "subjects": subjects,
        }


def _accuracy(values: Sequence[int]) -> dict[str, Any]:
    return {"num": len(values), "acc": round(sum(values) / len(values), 5)}


def _weighted(
    subjects: Mapping[str, Mapping[str, Any]], per_subject: Mapping[str, Sequence[int]], names: Sequence[str]
) -> dict[str, Any]:
    """``calculate_ins_level_acc``: sum(acc * n) / sum(n) over subjects (unrounded accs), rounded to 5 decimals."""
    total = sum(len(per_subject[n]) for n in names)
    weighted = sum((sum(per_subject[n]) / len(per_subject[n])) * len(per_subject[n]) for n in names)
    return {"num": total, "acc": round(weighted / total, 5) if total else 0}


__all__ = ["MMMU"]
