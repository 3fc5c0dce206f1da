"""Questions about synthetic scenes, in three kinds:

- ``global``: layout of the large shapes (where / what colour / what shape), visible at low resolution;
- ``detail``: the content of the only box (dot count, stripe orientation), invisible in the low-resolution view;
- ``detail_in_context``: a detail plus where it is, among several boxes ("how many dots are in the top right box?",
  "where is the box with vertical stripes?").

Everything is drawn from a seeded ``random.Random``, so a (seed, index) pair always gives the same sample.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .scenes import COLORS, ORIENTATIONS, QUADRANTS, SHAPES, Box, Scene, Shape

KINDS = ("global", "detail", "detail_in_context")
MAX_DOTS = 4


@dataclass(frozen=True)
class QA:
    question: str
    answer: str
    kind: str


def _shapes(rng: random.Random, quadrants: list[str]) -> tuple[Shape, ...]:
    kinds = rng.sample(SHAPES, len(quadrants))
    colors = rng.sample(sorted(COLORS), len(quadrants))
    return tuple(Shape(k, c, q) for k, c, q in zip(kinds, colors, quadrants))


def _box(rng: random.Random, quadrant: str, dots: bool) -> Box:
    if dots:
        return Box(quadrant, dots=rng.randint(1, MAX_DOTS))
    return Box(quadrant, stripes=rng.choice(ORIENTATIONS))


def sample_scene(rng: random.Random, kind: str, size: int, grid: int) -> Scene:
    quadrants = list(QUADRANTS)
    rng.shuffle(quadrants)
    if kind == "global":
        n_shapes, n_boxes = 2, rng.randint(0, 2)
    elif kind == "detail":
        n_shapes, n_boxes = rng.randint(1, 2), 1
    else:
        n_shapes, n_boxes = rng.randint(0, 1), rng.randint(2, 3)
    shapes = _shapes(rng, quadrants[:n_shapes])
    box_quadrants = quadrants[n_shapes : n_shapes + n_boxes]
    boxes = tuple(_box(rng, q, dots=rng.random() < 0.5) for q in box_quadrants)
    return Scene(size=size, grid=grid, shapes=shapes, boxes=boxes, seed=rng.randrange(1 << 30))


def questions(scene: Scene, kind: str, rng: random.Random) -> list[QA]:
    """All well-defined questions of ``kind`` about ``scene`` (shuffled)."""
    out: list[QA] = []
    if kind == "global":
        shape_kinds = [s.kind for s in scene.shapes]
        for shape in scene.shapes:
            out.append(QA(f"Where is the {shape.color} {shape.kind}?", shape.quadrant, kind))
            if shape_kinds.count(shape.kind) == 1:
                out.append(QA(f"What color is the {shape.kind}?", shape.color, kind))
            out.append(QA(f"What shape is in the {shape.quadrant}?", shape.kind, kind))
    elif kind == "detail":
        (box,) = scene.boxes
        if box.stripes is not None:
            out.append(QA("Are the stripes in the box horizontal or vertical?", box.stripes, kind))
        else:
            out.append(QA("How many dots are in the box?", str(box.dots), kind))
    else:
        for box in scene.boxes:
            if box.stripes is not None:
                same = [b for b in scene.boxes if b.stripes == box.stripes]
                if len(same) == 1:
                    out.append(QA(f"Where is the box with {box.stripes} stripes?", box.quadrant, kind))
                out.append(QA(f"Are the stripes in the {box.quadrant} box horizontal or vertical?", box.stripes, kind))
            else:
                same = [b for b in scene.boxes if b.dots == box.dots]
                if len(same) == 1:
                    noun = "dot" if box.dots == 1 else "dots"
                    out.append(QA(f"Where is the box with {box.dots} {noun}?", box.quadrant, kind))
                out.append(QA(f"How many dots are in the {box.quadrant} box?", str(box.dots), kind))
    rng.shuffle(out)
    return out


def applicable_kinds(scene: Scene) -> list[str]:
    kinds = ["global"] if len(scene.shapes) >= 1 else []
    if len(scene.boxes) == 1:
        kinds.append("detail")
    elif len(scene.boxes) >= 2:
        kinds.append("detail_in_context")
    return kinds


def training_questions(scene: Scene, kind: str, rng: random.Random, limit: int) -> list[QA]:
    """Up to ``limit`` questions: first one of ``kind``, then one of each other kind the scene supports, then more
    of ``kind`` (so every kind gets supervision from every scene that can support it)."""
    primary = questions(scene, kind, rng)
    chosen = primary[:1]
    for other in applicable_kinds(scene):
        if other != kind:
            chosen += questions(scene, other, rng)[:1]
    chosen += primary[1:]
    return chosen[:limit]


def answer_space(question: str) -> tuple[str, ...]:
    """The possible answers of a question template (for chance levels)."""
    if question.startswith("Where"):
        return QUADRANTS
    if question.startswith("What color"):
        return tuple(sorted(COLORS))
    if question.startswith("What shape"):
        return SHAPES
    if question.startswith("How many"):
        return tuple(str(i) for i in range(1, MAX_DOTS + 1))
    return ORIENTATIONS


def vocabulary_corpus() -> list[str]:
    """Every word the task uses, for training a tokenizer that covers it."""
    words = [*COLORS, *SHAPES, *QUADRANTS, *ORIENTATIONS, *(str(i) for i in range(1, MAX_DOTS + 1))]
    templates = [
        "Where is the red circle?",
        "What color is the square?",
        "What shape is in the top left?",
        "Are the stripes in the box horizontal or vertical?",
        "How many dots are in the box?",
        "Where is the box with vertical stripes?",
        "Are the stripes in the top right box horizontal or vertical?",
        "Where is the box with 3 dots?",
        "Where is the box with 1 dot?",
        "How many dots are in the bottom left box?",
    ]
    return templates + [" ".join(words)]
