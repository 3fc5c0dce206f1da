"""Task v2 of the ablation: large shapes visible at any resolution, tiny glyphs readable only from several views, and
questions that bind the two (issue 14).

An image is ``n * S`` pixels square (72 px for the ablation's 3x3 grid of 24-px views). It holds two large shapes of
different kinds in two quadrants and three or four *glyphs*, one per quadrant, of distinct types: one on each shape,
the others on the background.

A glyph is a 3x3-pixel mark in ink. The four types are the rotations of one hook (:data:`GLYPHS`), so every type has
the same number of inked pixels in every row and every column (2, 1, 2). That makes the glyph's type invisible to
any single strided view, the model's low-resolution view included (for an odd grid it is the centre strided view,
:attr:`inf_llava.geometry.Geometry.centre_phase`): a stride-``n`` pick keeps exactly one pixel of every 3x3 window,
and as the glyph's position is uniform over pixel phases that pixel is a uniformly random cell of the glyph, inked
with probability 5/9 whatever the type (the row and column sums being equal removes the little a view could learn
from where that pixel lands near the edges of the placement range). This is not aliasing at one phase: it holds at
every phase, and ``tests/synthetic_v2/test_task.py`` computes the Bayes-optimal accuracy of reading the type from
one strided view by enumerating placements. The local tiles (and all strided views together) hold every pixel.

Question kinds (:data:`KINDS`), balanced in every split:

- ``global``: the colour, place or kind of a large shape (answerable from the low-resolution view);
- ``detail``: the type of the glyph in a named quadrant (the glyph alone: needs the high-resolution views);
- ``detail_in_context``: where the glyph of a named type is, among three or four glyphs;
- ``glyph_on_shape``: the type of the glyph on a named shape (binds a glyph to a large shape);
- ``shape_with_glyph``: which shape carries the glyph of a named type (binds a large shape to a glyph).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..dataset import write_sample, write_split
from ..scenes import BACKGROUND, COLORS, QUADRANTS, SHAPES, Shape, draw_shapes
from ..tasks import QA

KINDS = ("global", "detail", "detail_in_context", "glyph_on_shape", "shape_with_glyph")
INK = (20, 20, 20)
GLYPH_SIDE = 3
_HOOK = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], dtype=bool)
# The four rotations of one hook: equal row sums and equal column sums (2, 1, 2) for every type.
GLYPHS: dict[str, np.ndarray] = {
    "north": _HOOK,
    "west": np.rot90(_HOOK, 1),
    "south": np.rot90(_HOOK, 2),
    "east": np.rot90(_HOOK, 3),
}
GLYPH_TYPES = tuple(GLYPHS)
SHAPE_FRACTION = 0.8  # shape side as a fraction of the quadrant side
SHAPE_JITTER = 3  # the glyph on a shape sits within this many pixels of the shape's inner point
MARGIN = 2  # background glyphs keep this far from the quadrant's edges


@dataclass(frozen=True)
class Glyph:
    quadrant: str
    type: str
    on_shape: bool


@dataclass(frozen=True)
class GlyphScene:
    size: int
    shapes: tuple[Shape, ...] = ()
    glyphs: tuple[Glyph, ...] = ()
    seed: int = 0  # placement
    details: bool = True  # False draws every glyph as the same solid 3x3 block (for tests)

    def shape_at(self, quadrant: str) -> Shape | None:
        return next((s for s in self.shapes if s.quadrant == quadrant), None)


def layout(scene: GlyphScene) -> tuple[dict, dict]:
    """Pixel rectangles ``(top, left, height, width)`` of the shapes and the glyphs' top-left corners ``(y, x)``,
    by quadrant. A glyph's position is uniform over a range of pixels, so over scenes its phase with respect to any
    stride is uniform too."""
    rng = random.Random(scene.seed)
    half = scene.size // 2
    side = int(half * SHAPE_FRACTION)
    shapes, glyphs = {}, {}
    for shape in scene.shapes:
        top, left = _origin(shape.quadrant, scene.size)
        shapes[shape.quadrant] = (top + rng.randint(0, half - side), left + rng.randint(0, half - side), side, side)
    for glyph in scene.glyphs:
        if glyph.on_shape:
            cy, cx = inner_point(scene.shape_at(glyph.quadrant).kind, shapes[glyph.quadrant])
            y = cy - 1 + rng.randint(-SHAPE_JITTER, SHAPE_JITTER)
            x = cx - 1 + rng.randint(-SHAPE_JITTER, SHAPE_JITTER)
        else:
            top, left = _origin(glyph.quadrant, scene.size)
            y = top + rng.randint(MARGIN, half - GLYPH_SIDE - MARGIN)
            x = left + rng.randint(MARGIN, half - GLYPH_SIDE - MARGIN)
        glyphs[glyph.quadrant] = (y, x)
    return shapes, glyphs


def inner_point(kind: str, rect: tuple[int, int, int, int]) -> tuple[int, int]:
    """A point deep inside the shape (its glyph's centre before jitter): the centre, or low in a triangle."""
    top, left, h, w = rect
    if kind == "triangle":
        return top + (2 * h) // 3, left + w // 2
    return top + h // 2, left + w // 2


def _origin(quadrant: str, size: int) -> tuple[int, int]:
    half = size // 2
    return (0 if quadrant.startswith("top") else half), (0 if quadrant.endswith("left") else half)


def render(scene: GlyphScene) -> Image.Image:
    image = Image.new("RGB", (scene.size, scene.size), BACKGROUND)
    shape_rects, glyph_corners = layout(scene)
    draw_shapes(ImageDraw.Draw(image), scene.shapes, shape_rects)
    pixels = np.asarray(image).copy()
    for glyph in scene.glyphs:
        y, x = glyph_corners[glyph.quadrant]
        mask = GLYPHS[glyph.type] if scene.details else np.ones((GLYPH_SIDE, GLYPH_SIDE), dtype=bool)
        pixels[y : y + GLYPH_SIDE, x : x + GLYPH_SIDE][mask] = INK
    return Image.fromarray(pixels)


def scene_from_record(scene: dict) -> GlyphScene:
    """The :class:`GlyphScene` of a split record's ``"scene"`` field."""
    return GlyphScene(
        size=scene["size"],
        shapes=tuple(Shape(**s) for s in scene["shapes"]),
        glyphs=tuple(Glyph(**g) for g in scene["glyphs"]),
        seed=scene["seed"],
        details=scene.get("details", True),
    )


def sample_scene(rng: random.Random, size: int) -> GlyphScene:
    """Two shapes of different kinds in two quadrants, each with a glyph on it; one or two glyphs on the background
    of the other quadrants; all glyph types distinct."""
    quadrants = list(QUADRANTS)
    rng.shuffle(quadrants)
    kinds = rng.sample(SHAPES, 2)
    shapes = tuple(Shape(kind, rng.choice(sorted(COLORS)), q) for kind, q in zip(kinds, quadrants[:2]))
    count = rng.choice((3, 4))
    types = rng.sample(GLYPH_TYPES, count)
    glyphs = tuple(Glyph(q, t, on_shape=i < 2) for i, (q, t) in enumerate(zip(quadrants, types)))
    return GlyphScene(size=size, shapes=shapes, glyphs=glyphs, seed=rng.randrange(1 << 30))


def questions(scene: GlyphScene, kind: str, rng: random.Random) -> list[QA]:
    """Every well-defined question of ``kind`` about ``scene`` (shuffled)."""
    out: list[QA] = []
    on_shapes = [g for g in scene.glyphs if g.on_shape]
    if kind == "global":
        for shape in scene.shapes:
            out.append(QA(f"What color is the {shape.kind}?", shape.color, kind))
            out.append(QA(f"Where is the {shape.kind}?", shape.quadrant, kind))
            out.append(QA(f"What shape is in the {shape.quadrant}?", shape.kind, kind))
    elif kind == "detail":
        out += [QA(f"Which glyph is in the {g.quadrant}?", g.type, kind) for g in scene.glyphs]
    elif kind == "detail_in_context":
        out += [QA(f"Where is the {g.type} glyph?", g.quadrant, kind) for g in scene.glyphs]
    elif kind == "glyph_on_shape":
        out += [QA(f"Which glyph is on the {scene.shape_at(g.quadrant).kind}?", g.type, kind) for g in on_shapes]
    elif kind == "shape_with_glyph":
        out += [QA(f"Which shape has the {g.type} glyph?", scene.shape_at(g.quadrant).kind, kind) for g in on_shapes]
    else:
        raise ValueError(f"unknown question kind {kind!r}; choose from {', '.join(KINDS)}")
    rng.shuffle(out)
    return out


def training_questions(scene: GlyphScene, first_kind: str, rng: random.Random, limit: int) -> list[QA]:
    """Up to ``limit`` questions, one per kind in turn starting at ``first_kind`` (kinds stay balanced)."""
    start = KINDS.index(first_kind)
    pools = [questions(scene, KINDS[(start + i) % len(KINDS)], rng) for i in range(len(KINDS))]
    chosen: list[QA] = []
    while len(chosen) < limit and any(pools):
        for pool in pools:
            if pool and len(chosen) < limit:
                chosen.append(pool.pop())
    return chosen


def independent_questions(scene: GlyphScene, rng: random.Random) -> list[QA]:
    """One conversation's worth of questions about ``scene`` in which no answer is stated by another question and
    its answer (shuffled): each shape's colour and one of its place or kind; one of each glyph's type or place; one
    of each shape glyph's type or shape."""
    out: list[QA] = []
    for shape in scene.shapes:
        out.append(QA(f"What color is the {shape.kind}?", shape.color, "global"))
        place = QA(f"Where is the {shape.kind}?", shape.quadrant, "global")
        out.append(rng.choice([place, QA(f"What shape is in the {shape.quadrant}?", shape.kind, "global")]))
    for glyph in scene.glyphs:
        detail = QA(f"Which glyph is in the {glyph.quadrant}?", glyph.type, "detail")
        out.append(rng.choice([detail, QA(f"Where is the {glyph.type} glyph?", glyph.quadrant, "detail_in_context")]))
        if glyph.on_shape:
            kind = scene.shape_at(glyph.quadrant).kind
            on = QA(f"Which glyph is on the {kind}?", glyph.type, "glyph_on_shape")
            out.append(rng.choice([on, QA(f"Which shape has the {glyph.type} glyph?", kind, "shape_with_glyph")]))
    rng.shuffle(out)
    return out


def answer_space(question: str) -> tuple[str, ...]:
    """The possible answers of a question template (for chance levels)."""
    if question.startswith("Where"):
        return QUADRANTS
    if question.startswith("What color"):
        return tuple(sorted(COLORS))
    if question.startswith(("What shape", "Which shape")):
        return SHAPES
    if question.startswith("Which glyph"):
        return GLYPH_TYPES
    raise ValueError(f"not a question of task v2: {question!r}")


def vocabulary_corpus(answers_alone: bool = True) -> list[str]:
    """Every word and template of the task, for the tokenizer's training corpus (``answers_alone=False``: without
    the answers on their own, the corpus the ablation's first runs used).

    Answers are written at the start of the assistant's turn, without a leading space, so every answer also appears
    alone: otherwise byte-level BPE learns only the space-prefixed words of the questions and splits an answer into
    characters ("triangle" -> "t ri angle", "top left" -> "t o p Ġleft"), and the model must commit to "t" before
    the token that tells a triangle from top-left."""
    templates = []
    for shape in SHAPES:
        templates += [f"What color is the {shape}?", f"Where is the {shape}?", f"Which glyph is on the {shape}?"]
    for quadrant in QUADRANTS:
        templates += [f"What shape is in the {quadrant}?", f"Which glyph is in the {quadrant}?"]
    for glyph in GLYPH_TYPES:
        templates += [f"Where is the {glyph} glyph?", f"Which shape has the {glyph} glyph?"]
    answers = sorted({*COLORS, *SHAPES, *QUADRANTS, *GLYPH_TYPES})
    return templates + [" ".join(answers)] + (answers * 4 if answers_alone else [])


SHAPE_CLASSES = ("none", *(f"{color} {kind}" for color in sorted(COLORS) for kind in SHAPES))
GLYPH_CLASSES = ("none", *GLYPH_TYPES)
SLOTS = tuple((quadrant, slot) for quadrant in QUADRANTS for slot in ("shape", "glyph"))


def shape_class(shape: dict | None) -> int:
    """Class index of a quadrant's shape record (``None``: no shape) for the stage-1 attribute heads."""
    return 0 if shape is None else SHAPE_CLASSES.index(f"{shape['color']} {shape['kind']}")


def glyph_class(glyph: dict | None) -> int:
    return 0 if glyph is None else GLYPH_CLASSES.index(glyph["type"])


def slot_sizes() -> list[int]:
    return [len(SHAPE_CLASSES) if slot == "shape" else len(GLYPH_CLASSES) for _, slot in SLOTS]


def without_details(scene: GlyphScene) -> GlyphScene:
    return replace(scene, details=False)


def generate_split(
    output: str | Path, split: str, count: int, *, seed: int = 0, size: int = 72, questions_per_image: int = 1
) -> Path:
    """``count`` images of ``split`` under ``output`` (LLaVA-format JSON + PNGs). Evaluation splits
    (``questions_per_image=1``) cycle the kinds, so kinds are balanced; training images carry up to
    ``questions_per_image`` questions, one per kind in turn, with the first kind cycling too."""
    output = Path(output)
    (output / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"inf-llava-task-v2/{seed}/{split}")
    records = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        scene = sample_scene(rng, size)
        if questions_per_image > 1:
            qas = training_questions(scene, kind, rng, questions_per_image)
        else:
            qas = questions(scene, kind, rng)[:1]
        records.append(write_sample(output, f"{split}-{index:06d}", render(scene), qas, kind, scene))
    return write_split(output, split, records)
