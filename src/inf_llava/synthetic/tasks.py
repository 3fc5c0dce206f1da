"""Questions about synthetic scenes, in three kinds:

- ``global``: the one large shape (what colour / what shape / where), visible at low resolution;
- ``detail``: the colour of the only box's fine mesh, invisible in the low-resolution view (a plain white box);
- ``detail_in_context``: two boxes with meshes of different colours, "where is the red box?". The low-resolution view
  shows two identical white boxes, so it can at best guess between them.

Every question is about one object of its category, so it is answerable by looking over the image tokens rather
than by matching one of several similar objects: what a small model trained from scratch on a CPU budget can learn,
while the detail questions still need the full-resolution views. Everything is drawn from a seeded
``random.Random``, so a (seed, index) pair always gives the same sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .scenes import COLORS, QUADRANTS, SHAPES, Box, Scene, Shape

KINDS = ("global", "detail", "detail_in_context")


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str


def sample_scene(rng: random.Random, kind: str, size: int, grid: int) -> Scene:
    """One shape, plus one box (``global`` and ``detail`` scenes) or two boxes of different colours
    (``detail_in_context`` scenes), each in its own quadrant."""
    quadrants = list(QUADRANTS)
    rng.shuffle(quadrants)
    colors = sorted(COLORS)
    shape = Shape(rng.choice(SHAPES), rng.choice(colors), quadrants[0])
    box_colors = rng.sample(colors, 2 if kind == "detail_in_context" else 1)
    boxes = tuple(Box(quadrant, color) for quadrant, color in zip(quadrants[1:], box_colors))
    return Scene(size=size, grid=grid, shapes=(shape,), boxes=boxes, seed=rng.randrange(1 << 30))


def questions(scene: Scene, kind: str, rng: random.Random) -> list[QA]:
    """All well-defined questions of ``kind`` about ``scene`` (shuffled)."""
    out: list[QA] = []
    if kind == "global":
        for shape in scene.shapes[:1]:
            out.append(QA("What color is the shape?", shape.color, kind))
            out.append(QA("What is the shape?", shape.kind, kind))
            out.append(QA("Where is the shape?", shape.quadrant, kind))
    elif kind == "detail" and len(scene.boxes) == 1:
        out.append(QA(DETAIL_QUESTION, scene.boxes[0].color, kind))
    elif kind == "detail_in_context" and len(scene.boxes) == 2:
        for box in scene.boxes:
            out.append(QA(f"Where is the {box.color} box?", box.quadrant, kind))
    rng.shuffle(out)
    return out


DETAIL_QUESTION = "What color is the box?"
DESCRIBE = "Describe the image."


def describe(scene: Scene) -> str:
    """Every object of the scene in reading order (dense supervision for training)."""
    parts = []
    for quadrant in QUADRANTS:
        for shape in scene.shapes:
            if shape.quadrant == quadrant:
                parts.append(f"a {shape.color} {shape.kind} in the {quadrant}")
        for box in scene.boxes:
            if box.quadrant == quadrant:
                parts.append(f"a {box.color} box in the {quadrant}")
    return ", ".join(parts) + "."


def applicable_kinds(scene: Scene) -> list[str]:
    kinds = ["global"] if scene.shapes else []
    kinds.append("detail" if len(scene.boxes) == 1 else "detail_in_context")
    return kinds


def training_questions(
    scene: Scene, kind: str, rng: random.Random, limit: int, describe_scene: bool = False
) -> list[QA]:
    """Up to ``limit`` questions: first one of ``kind``, then one of each other kind the scene supports, then more
    of every kind (so every kind gets supervision from every scene that can support it); with ``describe_scene``,
    also the full scene description at a random place (dense supervision)."""
    primary = questions(scene, kind, rng)
    others = [questions(scene, other, rng) for other in applicable_kinds(scene) if other != kind]
    chosen = primary[:1] + [qs[0] for qs in others if qs]
    chosen += primary[1:] + [qa for qs in others for qa in qs[1:]]
    chosen = chosen[:limit]
    if describe_scene:
        chosen.insert(rng.randint(0, len(chosen)), QA(DESCRIBE, describe(scene), "description"))
    return chosen


def answer_space(question: str) -> tuple[str, ...]:
    """The possible answers of a question template (for chance levels)."""
    if question.startswith("Where"):
        return QUADRANTS
    if question.startswith("What color"):
        return tuple(sorted(COLORS))
    if question.startswith("What is the shape"):
        return SHAPES
    raise ValueError(f"not a question of the synthetic task: {question!r}")


def vocabulary_corpus() -> list[str]:
    """Every word the task uses, for training a tokenizer that covers it."""
    words = [*COLORS, *SHAPES, *QUADRANTS]
    templates = [
        "What color is the shape?",
        "What is the shape?",
        "Where is the shape?",
        DETAIL_QUESTION,
        *(f"Where is the {color} box?" for color in COLORS),
        DESCRIBE,
        "a red circle in the top left, a blue box in the top right,",
        "a green triangle in the bottom left, a yellow box in the bottom right.",
    ]
    return templates + [" ".join(words)]
