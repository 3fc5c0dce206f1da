"""Training logs: ``metrics.jsonl`` (one JSON object per logged step) and the loss-curve PNG.

A resumed run first cuts ``metrics.jsonl`` back to the checkpoint's step, so the log never holds two rows for one
step (rows written between the checkpoint and a crash are re-logged by the resumed run).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..jsonl import JsonlAppender, atomic_write_text

METRICS_FILE = "metrics.jsonl"
LOSS_PLOT = "loss.png"


class MetricsLog:
    """Appends step rows to ``metrics.jsonl`` durably; ``resume_step`` keeps only rows up to that step."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is None:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            kept = [row for row in read_metrics(self.path) if row.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in kept))
        self._appender = JsonlAppender(self.path)

    def write(self, row: dict[str, Any]) -> None:
        self._appender.write(row)

    def close(self) -> None:
        self._appender.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All complete rows of a metrics file (a torn last line from a crash is ignored)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def plot_loss(metrics_path: str | os.PathLike, png_path: str | os.PathLike, title: str = "training loss") -> Path:
    """Draw loss (and learning rate, on a second axis) against the step; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in read_metrics(metrics_path) if "loss" in row]
    steps = [row["step"] for row in rows]
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    axis.plot(steps, [row["loss"] for row in rows], color="tab:blue", linewidth=1.2, label="loss")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel("loss", color="tab:blue")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    if rows and all("lr" in row for row in rows):
        lr_axis = axis.twinx()
        lr_axis.plot(steps, [row["lr"] for row in rows], color="tab:orange", linewidth=0.8, alpha=0.7)
        lr_axis.set_ylabel("learning rate", color="tab:orange")
    figure.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp-{os.getpid()}.png")
    figure.savefig(tmp)
    plt.close(figure)
    os.replace(tmp, png_path)
    return png_path
