"""A small, learnable LLaVA-format dataset generated on disk (tests, smoke runs, benchmarks; no download).

Each image is one coloured shape on a plain background; captions and answers name its colour and shape, so the
image really determines the text and a model can learn the task. ``kind="caption"`` writes stage-1 records (one
human turn with only ``<image>``, one caption); ``kind="instruct"`` writes multi-turn stage-2 records plus some
text-only ones (``text_only_every``).
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

COLORS = {"red": (220, 30, 30), "green": (30, 170, 60), "blue": (30, 60, 220), "yellow": (240, 210, 20)}
SHAPES = ("circle", "square", "triangle")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def draw_shape(color: str, shape: str, size: tuple[int, int] = (64, 48), background: str = "white") -> Image.Image:
    """One ``color`` ``shape`` centred on a plain background."""
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    w, h = size
    box = (w * 0.2, h * 0.15, w * 0.8, h * 0.85)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(w / 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=fill)
    return image


def make_toy_dataset(
    folder: str | os.PathLike,
    num_samples: int = 32,
    *,
    kind: str = "instruct",
    seed: int = 0,
    image_size: tuple[int, int] = (64, 48),
    text_only_every: int = 0,
    file_format: str = "jsonl",
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> Path:
    """Write ``num_samples`` records and their images under ``folder``; returns the data file path.

    ``image_size`` is ``(width, height)`` of every image; ``image_sizes`` instead cycles through several (mixed
    aspect ratios, e.g. wide and tall images for dynamic grids).

    Images go to ``folder/images`` and the records to ``folder/data.jsonl`` (or ``data.json``), with image paths
    relative to ``folder/images`` (pass that as ``--image-folder``).
    """
    if kind not in ("caption", "instruct"):
        raise ValueError(f"kind must be 'caption' or 'instruct', got {kind!r}")
    if file_format not in ("json", "jsonl"):
        raise ValueError(f"file_format must be 'json' or 'jsonl', got {file_format!r}")
    folder = Path(folder)
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    records = []
    for index in range(num_samples):
        sample_id = f"toy-{index:05d}"
        if text_only_every and index % text_only_every == text_only_every - 1:
            a, b = rng.randrange(6), rng.randrange(5)
            records.append(
                {
                    "id": sample_id,
                    "conversations": [
                        {"from": "human", "value": f"What is {NUMBERS[a]} plus {NUMBERS[b]}?"},
                        {"from": "gpt", "value": NUMBERS[a + b]},
                    ],
                }
            )
            continue
        color, shape = rng.choice(sorted(COLORS)), rng.choice(SHAPES)
        name = f"{sample_id}.png"
        size = image_sizes[index % len(image_sizes)] if image_sizes else image_size
        draw_shape(color, shape, tuple(size)).save(image_dir / name)
        if kind == "caption":
            turns = [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": f"a {color} {shape}"}]
        else:
            turns = [
                {"from": "human", "value": "<image>\nWhat color is the shape?"},
                {"from": "gpt", "value": color},
                {"from": "human", "value": "Which shape is it?"},
                {"from": "gpt", "value": f"It is a {shape}."},
            ]
        records.append({"id": sample_id, "image": name, "conversations": turns})
    path = folder / f"data.{file_format}"
    if file_format == "json":
        path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path
