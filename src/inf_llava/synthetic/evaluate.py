"""Accuracy of a model on a split of the synthetic task: exact match of the normalised answer, per question kind."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..images import load_image
from ..inference import GenerationSettings, InfLlavaEngine
from .tasks import KINDS


@dataclass(frozen=True)
class Question:
    id: str
    image: Path
    question: str
    answer: str
    kind: str


def load_questions(split_json: str | Path, limit: int | None = None) -> list[Question]:
    """The first question of every record of a split file (evaluation splits hold one question per image)."""
    split_json = Path(split_json)
    records = json.loads(split_json.read_text())
    out = []
    for record in records[:limit]:
        question = record["conversations"][0]["value"].replace("<image>", "").strip()
        out.append(
            Question(record["id"], split_json.parent / record["image"], question, record["answers"][0], record["kind"])
        )
    return out


def normalize(answer: str) -> str:
    return " ".join(answer.strip().lower().rstrip(".").split())


def score(predictions: Iterable[tuple[Question, str]]) -> dict:
    """``{"accuracy", "n", "per_kind": {kind: {"accuracy", "n"}}}`` from (question, prediction) pairs (the base
    task's kinds first, then any other kind in order of appearance)."""
    hits: dict[str, list[bool]] = defaultdict(list)
    for question, prediction in predictions:
        hits[question.kind].append(normalize(prediction) == normalize(question.answer))
    total = [h for kind in hits for h in hits[kind]]
    return {
        "accuracy": sum(total) / len(total) if total else 0.0,
        "n": len(total),
        "per_kind": {
            kind: {"accuracy": sum(hits[kind]) / len(hits[kind]), "n": len(hits[kind])}
            for kind in [*(k for k in KINDS if k in hits), *(k for k in hits if k not in KINDS)]
        },
    }


def predict(
    engine: InfLlavaEngine, questions: list[Question], batch_size: int = 16, progress: bool = False
) -> list[str]:
    """Greedy short answers, batched."""
    from tqdm.auto import tqdm

    settings = GenerationSettings(max_new_tokens=8)
    answers: list[str] = []
    bar = tqdm(total=len(questions), desc="evaluating", unit="q", disable=not progress)
    for start in range(0, len(questions), batch_size):
        batch = questions[start : start + batch_size]
        conversations = [engine.question(q.question) for q in batch]
        images = [[load_image(q.image)] for q in batch]
        answers += [c.text for c in engine.complete(conversations, images, settings)]
        bar.update(len(batch))
    bar.close()
    return answers


def evaluate(
    engine: InfLlavaEngine,
    split_json: str | Path,
    limit: int | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> dict:
    questions = load_questions(split_json, limit)
    return score(zip(questions, predict(engine, questions, batch_size, progress)))
