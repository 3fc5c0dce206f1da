"""What every benchmark provides: prompt construction and scoring as pure functions of the rows as distributed,
plus the facts the runner needs (hub source, default split, generation length, ids, images, official file layouts).

Scoring follows a *protocol profile* (spec evaluation.md section 8): ``lmms_eval_2024_07`` (the canonical one: the
paper says it follows lmms-eval, July 2024), ``official`` (each benchmark's own scorer) and ``lmms_eval_head``.
Only the benchmarks whose scorers differ between profiles react to it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

PROFILES = ("lmms_eval_2024_07", "official", "lmms_eval_head")
DEFAULT_PROFILE = "lmms_eval_2024_07"
# Every task's text is stripped by lmms-eval before scoring, and answers use the option letters from A.
ANSWER_WITH_LETTER = "Answer with the option's letter from the given choices directly."
ANSWER_WITH_PHRASE = "Answer the question using a single word or phrase."


@dataclass(frozen=True)
class HubSource:
    """Where lmms-eval loads the benchmark from on the Hugging Face hub."""

    path: str
    config: str | None
    split: str


@dataclass
class RawRow:
    """One row as read from a file, before it becomes a sample: the doc, its images (any reference
    :func:`inf_llava.eval.data.open_image` understands; ``None`` = take them from the doc) and where it came from."""

    doc: dict[str, Any]
    origin: str
    images: list[Any] | None = None
    base_dir: Path | None = None


@dataclass
class OfficialRows:
    rows: list[RawRow]
    notes: list[str] = field(default_factory=list)


class Benchmark(ABC):
    """One benchmark. Subclasses set the class attributes and implement the three pure functions."""

    name: ClassVar[str]
    title: ClassVar[str]
    paper_column: ClassVar[str]  # the column of the paper's Table 1
    hub: ClassVar[HubSource]
    max_new_tokens: ClassVar[int] = 1024  # lmms-eval's default when a task sets none
    id_field: ClassVar[str | None] = None  # natural sample id (else the row number is the key)
    required_fields: ClassVar[tuple[str, ...]] = ()
    uses_judge: ClassVar[bool] = False

    def __init__(self, profile: str = DEFAULT_PROFILE):
        if profile not in PROFILES:
            raise ValueError(f"unknown scoring profile {profile!r}; available: {', '.join(PROFILES)}")
        self.profile = profile

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, profile={self.profile!r})"

    # ---- the harness interface -------------------------------------------------------------------------------------
    @abstractmethod
    def build_prompt(self, doc: Mapping[str, Any]) -> str:
        """The task text (the runner puts the image placeholders in front, as lmms-eval's model wrapper does)."""

    @abstractmethod
    def process_result(self, doc: Mapping[str, Any], prediction: str) -> dict[str, Any]:
        """Score one raw model output against its row. Never calls a model or a judge."""

    @abstractmethod
    def aggregate(self, results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Headline metric under ``score`` (0-100) plus breakdowns."""

    # ---- data facts ----------------------------------------------------------------------------------------------
    def doc_id(self, doc: Mapping[str, Any]) -> str | None:
        if self.id_field is None or doc.get(self.id_field) is None:
            return None
        value = doc[self.id_field]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    def image_refs(self, doc: Mapping[str, Any]) -> list[Any]:
        """The images of a row, in prompt order, as stored in the doc."""
        image = doc.get("image")
        if image is None:
            return []
        return list(image) if isinstance(image, (list, tuple)) else [image]

    def include(self, doc: Mapping[str, Any]) -> bool:
        """Whether a row belongs to the scored benchmark (e.g. SEED keeps image questions)."""
        return True

    def excluded_note(self, count: int) -> str:
        return f"{count} row(s) are not part of {self.title} and were skipped"

    def check_doc(self, doc: Mapping[str, Any]) -> None:
        """Raise ValueError naming the first required field the row lacks."""
        for name in self.required_fields:
            if name not in doc:
                raise ValueError(f"missing field {name!r}")

    def load_official(self, path: Path, *, split: str | None, image_root: Path | None) -> OfficialRows | None:
        """Rows from the benchmark's own distributed layout at ``path``, or None when ``path`` is not one."""
        return None


def require_results(results: Sequence[Any], name: str) -> None:
    if not results:
        raise ValueError(f"{name}: no results to aggregate")


def mean_percent(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values)


def grouped_percent(results: Sequence[Mapping[str, Any]], key: str, value: str) -> dict[str, float]:
    """Mean of ``value`` x 100 per distinct ``key`` of the results (sorted by key)."""
    groups: dict[str, list[float]] = {}
    for row in results:
        groups.setdefault(str(row.get(key)), []).append(float(row[value]))
    return {name: mean_percent(values) for name, values in sorted(groups.items())}


__all__ = [
    "ANSWER_WITH_LETTER",
    "ANSWER_WITH_PHRASE",
    "DEFAULT_PROFILE",
    "PROFILES",
    "Benchmark",
    "HubSource",
    "OfficialRows",
    "RawRow",
    "grouped_percent",
    "mean_percent",
    "require_results",
]
