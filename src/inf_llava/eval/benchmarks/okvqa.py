"""OK-VQA val2014 (5,046 questions; spec evaluation.md section 6).

Canonical scoring normalises the prediction and all ten answers with the EvalAI processor and averages
``min(1, matches / 3)`` over the ten leave-one-out subsets; no stemming, no de-duplication. Profile ``official``
uses GT-Vision-Lab's evaluator (normalisation only when the answers differ). Rows are accepted as the HF release
(``answers``: ten strings) or as the official question + annotation files (``answers``: ten dicts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..base import ANSWER_WITH_PHRASE, Benchmark, HubSource, OfficialRows, RawRow, grouped_percent, require_results
from ..scoring.vqa import evalai_accuracy, official_vqa_accuracy

POST_PROMPT = "\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n" + ANSWER_WITH_PHRASE


class OKVQA(Benchmark):
    name: ClassVar[str] = "okvqa"
    title: ClassVar[str] = "OK-VQA (val2014)"
    paper_column: ClassVar[str] = "OKVQA"
    hub: ClassVar[HubSource] = HubSource("lmms-lab/OK-VQA", None, "val2014")
    id_field: ClassVar[str] = "question_id"
    required_fields: ClassVar[tuple[str, ...]] = ("question", "answers")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        return f"{doc['question']}{POST_PROMPT}"

    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        answers = doc.get("answers") or []
        score = official_vqa_accuracy if self.profile == "official" else evalai_accuracy
        accuracy, normalized = score(prediction, answers)
        return {
            "question_id": self.doc_id(doc),
            "pred": normalized,
            "accuracy": accuracy,
            "question_type": doc.get("question_type"),
            "answer_type": doc.get("answer_type"),
        }

    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        require_results(results, self.name)
        accuracies = [float(r["accuracy"]) for r in results]
        out: dict[str, Any] = {"score": 100.0 * sum(accuracies) / len(accuracies), "questions": len(accuracies)}
        if self.profile == "official":
            out["score_rounded"] = round(out["score"], 2)  # vqaEval.py reports round(100 * mean, 2)
        if any(r.get("answer_type") is not None for r in results):
            out["answer_types"] = grouped_percent(results, "answer_type", "accuracy")
        if any(r.get("question_type") is not None for r in results):
            out["question_types"] = grouped_percent(results, "question_type", "accuracy")
        return out

    def load_official(self, path: Path, *, split: str | None, image_root: Path | None) -> OfficialRows | None:
        """The VQA-format pair ``OpenEnded_mscoco_val2014_questions.json`` + ``mscoco_val2014_annotations.json``
        (``path`` is either file or their folder) and COCO images ``COCO_val2014_<12-digit id>.jpg`` in
        ``val2014/`` next to them (or ``--image-root``)."""
        folder = path if path.is_dir() else path.parent
        questions_file = _one(folder, "*questions*.json", split or self.hub.split) if path.is_dir() else path
        if questions_file is None or questions_file.suffix != ".json":
            return None
        questions_data = json.loads(questions_file.read_text(encoding="utf-8"))
        if not isinstance(questions_data, dict) or "questions" not in questions_data:
            return None
        subtype = str(questions_data.get("data_subtype", "val2014"))
        annotations_file = _one(folder, "*annotations*.json", subtype)
        if annotations_file is None:
            raise ValueError(f"{questions_file}: no *annotations*.json next to it to take the answers from")
        annotations_data = json.loads(annotations_file.read_text(encoding="utf-8"))
        answers = {a["question_id"]: a for a in annotations_data.get("annotations", [])}
        root = image_root or (folder / subtype if (folder / subtype).is_dir() else folder)
        rows = []
        for number, question in enumerate(questions_data["questions"]):
            annotation = answers.get(question.get("question_id"))
            if annotation is None:
                raise ValueError(
                    f"{annotations_file}: no annotation for question_id {question.get('question_id')!r} "
                    f"({questions_file} questions[{number}])"
                )
            doc = {**question, **{k: v for k, v in annotation.items() if k not in question}}
            image = f"COCO_{subtype}_{int(question['image_id']):012d}.jpg"
            rows.append(RawRow(doc, f"{questions_file} questions[{number}]", [image], root))
        return OfficialRows(rows)


def _one(folder: Path, pattern: str, subset: str) -> Path | None:
    """The file matching ``pattern``; among several (train2014 and val2014 side by side), the one naming ``subset``."""
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        found = [p for p in found if subset in p.name] or found
    if len(found) > 1:
        raise ValueError(f"{folder}: several files match {pattern} ({', '.join(p.name for p in found)}); pass one")
    return found[0] if found else None


__all__ = ["OKVQA", "POST_PROMPT"]
