"""SEED-Bench, image questions (spec evaluation.md section 2).

The headline is accuracy over ``data_type == "image"`` rows (14,233 questions); video rows are skipped at loading
(lmms-eval reports them separately as ``seed_video``; they are never part of "SEED-Bench (image)"). Scoring keeps the
first character of the stripped output, so verbose answers are wrong by design. Profile ``official`` uses LLaVA-1.5's
exact-match submission rule instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..base import ANSWER_WITH_LETTER, Benchmark, HubSource, OfficialRows, RawRow, grouped_percent, require_results
from ..scoring.letters import seed_correct, seed_exact_correct, seed_first_character

CHOICE_FIELDS = ("choice_a", "choice_b", "choice_c", "choice_d")


class SeedBench(Benchmark):
    name: ClassVar[str] = "seedbench"
    title: ClassVar[str] = "SEED-Bench (image)"
    paper_column: ClassVar[str] = "SEEDBench"
    hub: ClassVar[HubSource] = HubSource("lmms-lab/SEED-Bench", None, "test")
    id_field: ClassVar[str] = "question_id"
    required_fields: ClassVar[tuple[str, ...]] = ("question", *CHOICE_FIELDS, "answer")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        letters = "ABCD"
        options = "\n".join(f"{letter}. {doc[field]}" for letter, field in zip(letters, CHOICE_FIELDS))
        return f"{doc['question']}\n{options}\n{ANSWER_WITH_LETTER}"

    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        answer = str(doc["answer"])
        official = self.profile == "official"
        correct = seed_exact_correct(prediction, answer) if official else seed_correct(prediction, answer)
        return {
            "question_id": self.doc_id(doc),
            "data_type": doc.get("data_type", "image"),
            "question_type_id": doc.get("question_type_id"),
            "pred": prediction.strip() if official else seed_first_character(prediction),
            "answer": answer,
            "correct": int(correct),
        }

    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        require_results(results, self.name)
        image = [r for r in results if r.get("data_type", "image") == "image"]
        if not image:
            raise ValueError(f"{self.name}: no image question among the results")
        video = [r for r in results if r.get("data_type") == "video"]

        def accuracy(rows: Sequence[Mapping[str, Any]]) -> float | None:
            return 100.0 * sum(r["correct"] for r in rows) / len(rows) if rows else None

        return {
            "score": accuracy(image),
            "seed_image": accuracy(image),
            "seed_video": accuracy(video),
            "seed_all": accuracy(results),
            "questions": len(image),
            "correct": sum(r["correct"] for r in image),
            "question_types": grouped_percent(image, "question_type_id", "correct"),
        }

    def include(self, doc: Mapping[str, Any]) -> bool:
        return doc.get("data_type", "image") == "image"

    def excluded_note(self, count: int) -> str:
        return f"skipped {count} video question(s): SEED-Bench (image) scores data_type == 'image' rows only"

    def load_official(self, path: Path, *, split: str | None, image_root: Path | None) -> OfficialRows | None:
        """``SEED-Bench.json`` (``{"questions": [...]}``) with the images under ``SEED-Bench-image/`` next to it
        (or ``--image-root``); an image question's ``data_id`` is its file name."""
        if path.is_dir():
            path = path / "SEED-Bench.json"
        if path.suffix != ".json" or not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        questions = data.get("questions") if isinstance(data, dict) else None
        if not isinstance(questions, list) or (questions and "choice_a" not in questions[0]):
            return None
        root = image_root or path.parent / "SEED-Bench-image"
        rows = []
        for number, doc in enumerate(questions):
            if not isinstance(doc, dict):
                raise ValueError(f"{path}: questions[{number}] is not an object")
            refs = [str(doc["data_id"])] if doc.get("data_type", "image") == "image" and "data_id" in doc else []
            rows.append(RawRow(doc, f"{path} questions[{number}]", refs, root))
        return OfficialRows(rows)


__all__ = ["SeedBench"]
