"""LLaVA-Bench (In-the-Wild): 60 questions on 24 images, scored by a GPT judge relative to GPT-4's text-only
reference answers (spec evaluation.md section 7).

The judge runs before scoring (``inf-llava eval run --judge-url ...``) and its raw reply is stored with the row
under ``review``; :meth:`LlavaBenchWild.process_result` parses it, :meth:`aggregate` computes the relative score
(headline: ``all``) per category. Parse failures count as ``[-1, -1]`` in the means, as upstream, and are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ...jsonl import read_jsonl
from ..base import Benchmark, HubSource, OfficialRows, RawRow, require_results
from ..scoring.judge import PARSE_FAILURE, RULE_CATEGORIES, parse_score, relative_score, review_content


class LlavaBenchWild(Benchmark):
    name: ClassVar[str] = "llava_bench_wild"
    title: ClassVar[str] = "LLaVA-Bench (In-the-Wild)"
    paper_column: ClassVar[str] = "LLaVA-wild"
    hub: ClassVar[HubSource] = HubSource("lmms-lab/llava-bench-in-the-wild", None, "train")
    # lmms-eval July 2024 asked for 32768 (HEAD: 4096); the answer ends at EOS long before either.
    max_new_tokens: ClassVar[int] = 32768
    id_field: ClassVar[str] = "question_id"
    required_fields: ClassVar[tuple[str, ...]] = ("caption", "gpt_answer", "category")
    uses_judge: ClassVar[bool] = True

    @staticmethod
    def question(doc: Mapping[str, Any]) -> str:
        """The HF release calls it ``question``, the official ``questions.jsonl`` ``text``."""
        return str(doc["question"] if "question" in doc else doc["text"])

    def check_doc(self, doc: Mapping[str, Any]) -> None:
        super().check_doc(doc)
        if "question" not in doc and "text" not in doc:
            raise ValueError("missing field 'question' (or 'text')")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        return self.question(doc)

    def judge_content(self, doc: Mapping[str, Any], prediction: str) -> str:
        """The judge's user message for this row and (raw) model answer."""
        return review_content(
            doc.get("caption"), self.question(doc), str(doc.get("gpt_answer", "")), prediction.strip(), doc["category"]
        )

    parse_score = staticmethod(parse_score)

    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        review = doc.get("review")
        scores = parse_score(review) if isinstance(review, str) else list(PARSE_FAILURE)
        return {
            "question_id": self.doc_id(doc),
            "category": doc.get("category"),
            "scores": scores,
            "review_missing": not isinstance(review, str),
            "parse_failed": isinstance(review, str) and scores == list(PARSE_FAILURE),
        }

    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        require_results(results, self.name)
        overall = relative_score([r["scores"] for r in results])
        out: dict[str, Any] = {
            "score": overall["relative"] if overall else None,
            "questions": len(results),
            "reference_mean_x10": round(overall["reference_mean"] * 10, 3) if overall else None,
            "model_mean_x10": round(overall["model_mean"] * 10, 3) if overall else None,
            "parse_failures": sum(1 for r in results if r.get("parse_failed")),
            "missing_reviews": sum(1 for r in results if r.get("review_missing")),
            "categories": {},
        }
        for category in RULE_CATEGORIES:
            rows = [r["scores"] for r in results if r.get("category") == category]
            rel = relative_score(rows)
            if rel is not None:
                out["categories"][category] = rel["relative"]
        return out

    def load_official(self, path: Path, *, split: str | None, image_root: Path | None) -> OfficialRows | None:
        """The official folder: ``questions.jsonl``, ``context.jsonl`` (captions), ``answers_gpt4.jsonl``
        (reference answers) and ``images/``."""
        folder = path if path.is_dir() else path.parent
        questions = folder / "questions.jsonl"
        if not questions.is_file() or (path.is_file() and path != questions):
            return None
        captions = {row["image"]: row.get("caption") for _, row in read_jsonl(folder / "context.jsonl")}
        references = {row["question_id"]: row.get("text") for _, row in read_jsonl(folder / "answers_gpt4.jsonl")}
        root = image_root or folder / "images"
        rows = []
        for number, row in read_jsonl(questions):
            origin = f"{questions} line {number}"
            for name in ("question_id", "image", "text", "category"):
                if name not in row:
                    raise ValueError(f"{origin}: missing field {name!r}")
            if row["image"] not in captions:
                raise ValueError(f"{origin}: image {row['image']!r} has no caption in context.jsonl")
            if row["question_id"] not in references:
                raise ValueError(f"{origin}: question_id {row['question_id']!r} has no answer in answers_gpt4.jsonl")
            doc = {**row, "caption": captions[row["image"]], "gpt_answer": references[row["question_id"]]}
            rows.append(RawRow(doc, origin, [str(row["image"])], root))
        return OfficialRows(rows)


__all__ = ["LlavaBenchWild"]
