"""Write the synthetic task as LLaVA-format JSON + PNG images (train / validation / test splits by seed).

Each record: ``{"id", "image", "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt",
"value": answer}, ...], "kind", "answers"}``. Training records may carry several question turns about one image
(one image encoding supervises several answers); evaluation records carry one question each, kinds balanced.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

from ..jsonl import atomic_write_text
from .scenes import render
from .tasks import KINDS, questions, sample_scene, training_questions

SPLITS = ("train", "validation", "test")


def generate_split(
    output: str | Path,
    split: str,
    count: int,
    *,
    seed: int = 0,
    image_size: int = 96,
    grid: int = 3,
    questions_per_image: int = 1,
    describe: bool = False,
) -> Path:
    """Generate ``count`` images of ``split`` under ``output``; returns the JSON path. Training splits
    (``questions_per_image > 1``) may add the full scene description as one more turn (``describe``)."""
    if grid % 2 == 0:
        raise ValueError(f"the synthetic task needs an odd grid (its base view is a centre pick), got {grid}")
    if image_size % grid:
        raise ValueError(f"image size {image_size} is not a multiple of the grid {grid}")
    output = Path(output)
    (output / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"inf-llava-synthetic/{seed}/{split}")
    records = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        scene = sample_scene(rng, kind, image_size, grid)
        if questions_per_image > 1:
            qas = training_questions(scene, kind, rng, questions_per_image, describe_scene=describe)
        else:
            qas = questions(scene, kind, rng)[:1]
        records.append(write_sample(output, f"{split}-{index:06d}", render(scene), qas, kind, scene))
    return write_split(output, split, records)


def write_sample(output: Path, sample_id: str, image, qas, kind: str, scene, **extra) -> dict:
    """Save ``image`` under ``output/images`` and return its LLaVA-format record (``extra`` fields go after
    ``kind``): one human/gpt turn per question, the image token in the first."""
    relative = f"images/{sample_id}.png"
    image.save(output / relative)
    conversations = []
    for turn, qa in enumerate(qas):
        prefix = "<image>\n" if turn == 0 else ""
        conversations += [{"from": "human", "value": prefix + qa.question}, {"from": "gpt", "value": qa.answer}]
    return {
        "id": sample_id,
        "image": relative,
        "conversations": conversations,
        "kind": kind,
        **extra,
        "answers": [qa.answer for qa in qas],
        "scene": asdict(scene),
    }


def write_split(output: Path, split: str, records: list[dict]) -> Path:
    """Write ``output/{split}.json`` atomically; returns its path."""
    path = output / f"{split}.json"
    atomic_write_text(path, json.dumps(records, indent=1) + "\n")
    return path


def generate(
    output: str | Path,
    *,
    train: int = 3000,
    validation: int = 300,
    test: int = 300,
    seed: int = 0,
    image_size: int = 96,
    grid: int = 3,
    questions_per_image: int = 3,
    describe: bool = False,
) -> dict[str, Path]:
    """All three splits; training images carry up to ``questions_per_image`` questions."""
    counts = {"train": train, "validation": validation, "test": test}
    return {
        split: generate_split(
            output,
            split,
            counts[split],
            seed=seed,
            image_size=image_size,
            grid=grid,
            questions_per_image=questions_per_image if split == "train" else 1,
            describe=describe and split == "train",
        )
        for split in SPLITS
    }
