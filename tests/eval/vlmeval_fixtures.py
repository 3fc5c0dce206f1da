"""Benchmark TSVs in VLMEvalKit's format (``index``, base64 ``image``, ``question``, options ``A``-``D``,
``hint``, ``answer`` letter, ``category``, ...), built from the shipped demo model's held-out synthetic questions
so that the demo model gets a good share of them right. MMBench files carry circular copies (index + k * 1e6,
options rotated, the copy's ``image`` cell holding the main row's index), as the released TSVs do.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from inf_llava.assets import ASSETS_DIR

# Options per question kind: the truth plus the other values of the same attribute (four each; "star" is a distractor
# no scene has).
CHOICES = {"shape": ["circle", "square", "triangle", "star"], "color": ["red", "green", "blue", "yellow"]}


def demo_questions(count: int) -> list[dict]:
    """The first ``count`` global shape questions and detail colour questions of the demo test split, alternating."""
    records = json.loads((ASSETS_DIR / "demo-test" / "test.json").read_text())
    shapes = [r for r in records if r["kind"] == "global" and r["answers"][0] in CHOICES["shape"]]
    colours = [r for r in records if r["kind"] == "detail"]
    picked = [r for pair in zip(shapes, colours) for r in pair][:count]
    out = []
    for record in picked:
        truth = record["answers"][0]
        options = CHOICES["shape"] if truth in CHOICES["shape"] else CHOICES["color"]
        image = (ASSETS_DIR / "demo-test" / record["image"]).read_bytes()
        question = record["conversations"][0]["value"].replace("<image>", "").strip()
        out.append({"question": question, "options": options, "answer": options.index(truth), "image": image})
    return out


def write_tsv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=columns).to_csv(path, sep="\t", index=False)
    return path


def write_mmbench(folder: Path, count: int = 6, name: str = "MMBench_DEV_EN") -> Path:
    rows = []
    for number, q in enumerate(demo_questions(count)):
        n = len(q["options"])
        for k in range(n):
            rotated = q["options"][k:] + q["options"][:k]
            row = {"index": number + k * 1_000_000, "question": q["question"], "hint": None}
            row.update(dict(zip("ABCD", rotated + [None] * (4 - n))))
            row["answer"] = "ABCD"[(q["answer"] - k) % n]
            row["image"] = base64.b64encode(q["image"]).decode() if k == 0 else str(number)
            row.update({"category": "synthetic", "l2-category": "perception", "split": "dev"})
            rows.append(row)
    columns = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image", "l2-category", "split"]
    return write_tsv(folder / f"{name}.tsv", rows, columns)


def write_plain_mcq(folder: Path, name: str, count: int = 6, hint: str | None = None) -> Path:
    """SEEDBench_IMG / AI2D_TEST / ScienceQA_TEST layout: one row per question, no circular copies."""
    rows = []
    for number, q in enumerate(demo_questions(count)):
        row = {"index": number, "question": q["question"], "hint": hint}
        row.update(dict(zip("ABCD", q["options"] + [None] * (4 - len(q["options"])))))
        row.update(
            {"answer": "ABCD"[q["answer"]], "category": "synthetic", "image": base64.b64encode(q["image"]).decode()}
        )
        rows.append(row)
    columns = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "image"]
    return write_tsv(folder / f"{name}.tsv", rows, columns)
