"""MMBench (EN and CN), dev split, CircularEval (spec evaluation.md section 1).

Rows come as the OpenCompass TSV (``l2-category``, base64 images) or the HF ``lmms-lab/MMBench`` release
(``L2-category``, decoded images); both are accepted. The CN task keeps two lmms-eval quirks: the English options
header and a hint test that only rejects null (a literal ``"nan"`` hint is printed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..base import ANSWER_WITH_LETTER, Benchmark, HubSource, require_results
from ..scoring.mcq import (
    Judge,
    can_infer,
    circular_eval,
    contiguous_options,
    hit_rates,
    is_missing,
    option_texts,
)

OPTIONS_HEADER = "There are several options:"
POST_PROMPTS = {"en": "\n" + ANSWER_WITH_LETTER, "cn": "\n请直接使用所提供的选项字母作为答案回答。"}


def _is_nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


class MMBench(Benchmark):
    id_field: ClassVar[str] = "index"
    required_fields: ClassVar[tuple[str, ...]] = ("index", "question")
    paper_columns: ClassVar[dict[str, str]] = {"en": "MMB", "cn": "MMB-CN"}

    def __init__(self, language: str = "en", profile: str = "lmms_eval_2024_07"):
        super().__init__(profile)
        if language not in POST_PROMPTS:
            raise ValueError(f"MMBench language must be 'en' or 'cn', got {language!r}")
        self.language = language
        self.name = f"mmbench_{language}"
        self.title = f"MMBench-{language.upper()} (dev)"
        self.paper_column = self.paper_columns[language]
        self.hub = HubSource("lmms-lab/MMBench", language, "dev")
        self.max_new_tokens = 1024 if language == "en" else 256

    # ---- prompt ------------------------------------------------------------------------------------------------------
    @staticmethod
    def options_block(doc: Mapping[str, Any]) -> str:
        """``create_options_prompt``: truthy options A-E sorted, NaN / "nan" skipped, trailing newlines removed."""
        text = OPTIONS_HEADER + "\n"
        for letter in sorted(letter for letter in "ABCDE" if letter in doc and doc[letter]):
            item = doc[letter]
            if not _is_nan(item) and item != "nan":
                text += f"{letter}. {item}\n"
        return text.rstrip("\n")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        hint = doc.get("hint")
        has_hint = not _is_nan(hint) and (self.language == "cn" or hint != "nan")
        question, options = doc["question"], self.options_block(doc)
        query = f"{hint} {question} {options}" if has_hint else f"{question} {options}"
        return f"{query}\n{POST_PROMPTS[self.language]}"

    # ---- scoring -----------------------------------------------------------------------------------------------------
    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        text = prediction.strip()
        answer = doc.get("answer")
        return {
            "index": int(doc["index"]),
            "answer": None if is_missing(answer) else str(answer),
            "pred": can_infer(text, option_texts(doc, "ABCD")),
            "prediction": text,
            "question": doc["question"],
            "options": [str(o) for o in contiguous_options(doc)],
            "category": doc.get("category"),
            "l2_category": doc.get("l2-category", doc.get("L2-category")),
        }

    def aggregate(self, results: Sequence[Mapping[str, Any]], judge: Judge | None = None) -> dict[str, Any]:
        """CircularEval accuracy x 100 over the main questions (index < 1e6) present in ``results``.

        ``judge`` (optional) resolves rows the heuristics cannot; without one such rows count as wrong and are
        reported under ``unresolved``.
        """
        require_results(results, self.name)
        missing = [r["index"] for r in results if r.get("answer") is None]
        if missing:
            raise ValueError(
                f"{self.name}: {len(missing)} row(s) have no ground-truth answer (e.g. index {missing[0]}); only the "
                "dev split can be scored locally (test goes to the OpenCompass server)"
            )
        circular = circular_eval(results, judge)
        hits = circular["hits"]
        if not hits:
            raise ValueError(f"{self.name}: no main question (index < 1000000) among the results")
        rows = circular["rows"]
        return {
            "score": 100.0 * sum(hits.values()) / len(hits),
            "questions": len(hits),
            "rows": len(rows),
            "correct": sum(hits.values()),
            "unresolved": circular["unresolved"],
            "judged": circular["judged"],
            "orphan_rows": circular["orphan_rows"],
            "categories": hit_rates(hits, {i: rows[i].get("category") for i in hits}),
            "l2_categories": hit_rates(hits, {i: rows[i].get("l2_category") for i in hits}),
        }

    def doc_id(self, doc: Mapping[str, Any]) -> str | None:
        return str(int(doc["index"])) if doc.get("index") is not None else None


__all__ = ["MMBench", "OPTIONS_HEADER", "POST_PROMPTS"]
