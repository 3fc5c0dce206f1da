"""AI2D test (the masked 3,088-question release lmms-eval used; spec evaluation.md section 3).

The regex filter turns a raw output starting with ``X.`` into ``X``; the result is stripped and compared to the
target letter ignoring case and punctuation (not whitespace).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..base import ANSWER_WITH_LETTER, Benchmark, HubSource, mean_percent, require_results
from ..scoring.letters import ai2d_correct, ai2d_filter, option_letters


class AI2D(Benchmark):
    name: ClassVar[str] = "ai2d"
    title: ClassVar[str] = "AI2D (test)"
    paper_column: ClassVar[str] = "AI2D"
    hub: ClassVar[HubSource] = HubSource("lmms-lab/ai2d", None, "test")
    max_new_tokens: ClassVar[int] = 16
    required_fields: ClassVar[tuple[str, ...]] = ("question", "options", "answer")

    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        options = list(doc["options"])
        choices = "\n".join(f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options))
        return f"{doc['question']}\n{choices}\n{ANSWER_WITH_LETTER}"

    @staticmethod
    def target(doc: Mapping[str, Any]) -> str:
        """The answer letter; ``answer`` holds the 0-based option index as a string."""
        return option_letters(len(doc["options"]))[int(doc["answer"])]

    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        target = self.target(doc)
        return {"pred": ai2d_filter(prediction), "answer": target, "correct": int(ai2d_correct(prediction, target))}

    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        require_results(results, self.name)
        correct = [r["correct"] for r in results]
        return {"score": mean_percent(correct), "questions": len(correct), "correct": sum(correct)}


__all__ = ["AI2D"]
