"""ScienceQA-IMG: test problems that have an image (2,017; spec evaluation.md section 4).

Profiles: ``lmms_eval_2024_07`` (canonical, case-sensitive letter rule), ``lmms_eval_head`` (lower-cases both sides)
and ``official`` (LLaVA-1.5 ``eval_science_qa.py``, with its ``The answer is X`` regex).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..base import ANSWER_WITH_LETTER, Benchmark, HubSource, OfficialRows, RawRow, grouped_percent, require_results
from ..scoring.letters import (
    option_letters,
    sqa_correct_llava,
    sqa_correct_lmms_eval_2024,
    sqa_correct_lmms_eval_head,
    sqa_parse_llava,
)


class ScienceQAImg(Benchmark):
    name: ClassVar[str] = "scienceqa_img"
    title: ClassVar[str] = "ScienceQA-IMG (test)"
    paper_column: ClassVar[str] = "ScienceQA-img"
    hub: ClassVar[HubSource] = HubSource("lmms-lab/ScienceQA", "ScienceQA-IMG", "test")
    max_new_tokens: ClassVar[int] = 16
    id_field: ClassVar[str] = "pid"  # only the official problems.json has ids; HF rows are keyed by row number
    required_fields: ClassVar[tuple[str, ...]] = ("question", "choices", "answer")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        choices = list(doc["choices"])
        options = "\n".join(f"{letter}. {choice}" for letter, choice in zip(option_letters(len(choices)), choices))
        hint = doc.get("hint") or ""
        context = f"Context: {hint}\n" if hint else ""
        return f"{context}{doc['question']}\n{options}\n{ANSWER_WITH_LETTER}"

    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        choices = list(doc["choices"])
        answer = int(doc["answer"])
        target = option_letters(len(choices))[answer]
        if self.profile == "official":
            correct, pred = sqa_correct_llava(prediction, answer, len(choices)), sqa_parse_llava(prediction, 5)
        elif self.profile == "lmms_eval_head":
            correct, pred = sqa_correct_lmms_eval_head(prediction, target), prediction.strip()
        else:
            correct, pred = sqa_correct_lmms_eval_2024(prediction, target), prediction.strip()
        return {"pred": pred, "answer": target, "correct": int(correct), "subject": doc.get("subject")}

    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        require_results(results, self.name)
        correct = [r["correct"] for r in results]
        return {
            "score": 100.0 * sum(correct) / len(correct),
            "questions": len(correct),
            "correct": sum(correct),
            "subjects": grouped_percent(results, "subject", "correct"),
        }

    def include(self, doc: Mapping[str, Any]) -> bool:
        return doc.get("image") is not None

    def excluded_note(self, count: int) -> str:
        return f"skipped {count} problem(s) without an image: ScienceQA-IMG is the image subset"

    def load_official(self, path: Path, *, split: str | None, image_root: Path | None) -> OfficialRows | None:
        """``problems.json`` (pid -> problem) with images at ``images/<split>/<pid>/image.png``; the split comes
        from each problem's ``split`` field (``pid_splits.json`` is not needed)."""
        if path.is_dir():
            path = path / "problems.json"
        if path.name != "problems.json" or not path.is_file():
            return None
        problems = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(problems, dict):
            raise ValueError(f"{path}: expected an object mapping problem ids to problems")
        split = split or "test"
        root = image_root or path.parent / "images"
        rows = []
        for pid, problem in problems.items():
            if not isinstance(problem, dict):
                raise ValueError(f"{path}: problem {pid!r} is not an object")
            if problem.get("split", split) != split:
                continue
            doc = {"pid": str(pid), **problem}
            refs = [str(problem["image"])] if problem.get("image") else []
            rows.append(RawRow(doc, f"{path} problem {pid}", refs, root / split / str(pid)))
        return OfficialRows(rows, [f"problems.json: {len(rows)} problem(s) in split {split!r}"])


__all__ = ["ScienceQAImg"]
