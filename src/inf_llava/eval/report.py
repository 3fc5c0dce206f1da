"""``inf-llava eval report``: evaluation runs side by side with the paper's Table 1 (spec inf-llava.md 17.1)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import DataError
from .runner import METRICS_FILE

TABLE1_COLUMNS = ("ScienceQA-img", "OKVQA", "SEEDBench", "MMB", "MMB-CN", "AI2D", "LLaVA-wild", "MMMU")
# Numbers exactly as printed in the paper (INF-LLaVA* is trained on more data, see its Table 2).
PAPER_TABLE1: Mapping[str, Mapping[str, float]] = {
    "INF-LLaVA (paper)": dict(zip(TABLE1_COLUMNS, (75.71, 60.67, 70.47, 70.35, 63.23, 60.59, 67.50, 37.00))),
    "INF-LLaVA* (paper)": dict(zip(TABLE1_COLUMNS, (77.44, 57.04, 72.65, 74.38, 64.57, 75.42, 78.20, 37.20))),
}
REFERENCE_ROW = "INF-LLaVA (paper)"


def find_metrics(paths: Sequence[str | Path]) -> list[Path]:
    """Every ``metrics.json`` given directly or found under the given folders, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(path.rglob(METRICS_FILE)))
        else:
            raise DataError(f"{path}: no such file or directory")
    if not found:
        raise DataError(f"no {METRICS_FILE} under {', '.join(map(str, paths))}: run `inf-llava eval run` first")
    return found


def _label(metrics: Mapping[str, Any], path: Path) -> str:
    model = metrics.get("model")
    return Path(str(model)).name or str(model) if model else path.parent.name


def collect(paths: Sequence[str | Path]) -> dict[str, dict[str, tuple[float | None, Path]]]:
    """``{model label: {Table 1 column: (score, metrics file)}}``; two runs of one model on one benchmark clash."""
    rows: dict[str, dict[str, tuple[float | None, Path]]] = {}
    for path in find_metrics(paths):
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
            column = metrics["paper_column"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"{path}: not a metrics file of `inf-llava eval` ({exc})") from None
        label = _label(metrics, path)
        row = rows.setdefault(label, {})
        if column in row:
            raise DataError(f"{label} has two {column} results ({row[column][1]} and {path}); report one of them")
        row[column] = (metrics.get("score"), path)
    return rows


def _cell(score: float | None, reference: float | None) -> str:
    if score is None:
        return "n/a"
    if reference is None:
        return f"{score:.2f}"
    return f"{score:.2f} ({score - reference:+.2f})"


def markdown_table(paths: Sequence[str | Path]) -> str:
    """The paper's INF-LLaVA rows, then one row per evaluated model; run cells show the difference to INF-LLaVA."""
    rows = collect(paths)
    lines = [
        "| Model | " + " | ".join(TABLE1_COLUMNS) + " |",
        "|---|" + "---|" * len(TABLE1_COLUMNS),
    ]
    for label, values in PAPER_TABLE1.items():
        lines.append(f"| {label} | " + " | ".join(f"{values[c]:.2f}" for c in TABLE1_COLUMNS) + " |")
    reference = PAPER_TABLE1[REFERENCE_ROW]
    for label in sorted(rows):
        cells = [_cell(rows[label][c][0], reference[c]) if c in rows[label] else "-" for c in TABLE1_COLUMNS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"Run cells: score (difference to {REFERENCE_ROW}). '-': not evaluated.")
    return "\n".join(lines) + "\n"


def summary(metrics: Mapping[str, Any]) -> str:
    """A short human-readable account of one run (CLI output)."""
    score = metrics.get("score")
    shown = "n/a" if score is None else f"{score:.2f}"
    text = f"{metrics['title']}: {shown}  ({metrics['scored']} of {metrics['samples']} samples scored"
    text += f", profile {metrics['profile']})"
    paper = PAPER_TABLE1[REFERENCE_ROW].get(metrics.get("paper_column", ""))
    if paper is not None:
        text += f"\npaper (INF-LLaVA, Table 1): {paper:.2f}"
    for note in metrics.get("notes", []):
        text += f"\nnote: {note}"
    return text


__all__ = ["PAPER_TABLE1", "TABLE1_COLUMNS", "collect", "find_metrics", "markdown_table", "summary"]
