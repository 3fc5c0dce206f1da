"""The wide-and-tall variant of the synthetic task: where per-image dynamic DCM grids should help.

Scenes are ``72 x 144`` (wide) or ``144 x 72`` (tall), half of each. With 24-px views the official fixed 3x3 grid pads
such an image to a ``144 x 144`` square and resizes it to its ``72 x 72`` canvas: scale 1/2, half the canvas is
padding. A dynamic grid with the official budget (``max_views=9``) picks 2x4 (4x2 when tall): a ``48 x 96`` canvas that
holds the image at scale 2/3 with no padding (``inf_llava.geometry.select_grid``; checked in the tests).

The detail is *band-limited*: a box is filled with vertical stripes, two pixels of its colour ``c`` then two of the
complement ``2G - c`` around the grey ``G``, period 4, at the stripe phase that the fixed grid's 2x antialiased
bicubic downscale maps to the plain grey ``G`` (every output pixel's filter taps pair a ``c`` pixel with a ``2G - c``
one). So inside a box the fixed-grid canvas holds no trace of the colour, while at the dynamic grid's scale 2/3 the
stripes keep their full contrast (``stripe_contrast``; measured in ``tests/test_aspect_task.py``). What remains for the
fixed grid is the box's rim, where the filter mixes the stripes with the surround: a weak, position-dependent trace.

Question kinds are the base task's (:mod:`inf_llava.synthetic.tasks`): ``global`` (the large shape, visible at any
resolution), ``detail`` (the colour of the only box) and ``detail_in_context`` (which quadrant holds the box of a given
colour, among two).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .dataset import write_sample, write_split
from .scenes import BACKGROUND, COLORS, QUADRANTS, SHAPES, Box, Shape, draw_shapes
from .tasks import KINDS, questions, training_questions

WIDE, TALL = (72, 144), (144, 72)  # (height, width)
ORIENTATIONS = {"wide": WIDE, "tall": TALL}
STRIPE_PERIOD = 4
GREY = 128
BOX_SIDE = 24  # pixels of the original image, a multiple of the stripe period
TAPER = 8  # columns over which the stripes' contrast ramps up from the box's sides
RIM = (60, 60, 60)  # the box's one-pixel outline: visible at every resolution


@dataclass(frozen=True)
class AspectScene:
    height: int
    width: int
    shapes: tuple[Shape, ...] = ()
    boxes: tuple[Box, ...] = ()
    seed: int = 0
    details: bool = True  # False draws the boxes' stripes in grey (for the tests)

    @property
    def orientation(self) -> str:
        return "wide" if self.width > self.height else "tall"


def complement(color: str) -> tuple[int, int, int]:
    """The stripe partner of ``color``: ``2G - c`` per channel, so the pair averages to the grey ``G``."""
    return tuple(2 * GREY - v for v in COLORS[color])


def _quadrant_box(quadrant: str, height: int, width: int) -> tuple[int, int, int, int]:
    top = 0 if quadrant.startswith("top") else height // 2
    left = 0 if quadrant.endswith("left") else width // 2
    return top, left, height // 2, width // 2


def _layout(scene: AspectScene) -> tuple[dict, dict]:
    """Pixel rectangles (top, left, height, width) of shapes and boxes, jittered inside their quadrants. Boxes start
    on multiples of the stripe period (the stripe phase is part of the task's definition)."""
    rng = random.Random(scene.seed)
    shapes, boxes = {}, {}
    for shape in scene.shapes:
        top, left, qh, qw = _quadrant_box(shape.quadrant, scene.height, scene.width)
        side = int(min(qh, qw) * 0.8)
        shapes[shape.quadrant] = (top + rng.randint(0, qh - side), left + rng.randint(0, qw - side), side, side)
    for box in scene.boxes:
        top, left, qh, qw = _quadrant_box(box.quadrant, scene.height, scene.width)
        step = STRIPE_PERIOD
        dy = step * rng.randint(0, (qh - BOX_SIDE) // step)
        dx = step * rng.randint(0, (qw - BOX_SIDE) // step)
        boxes[box.quadrant] = (top + dy, left + dx, BOX_SIDE, BOX_SIDE)
    return shapes, boxes


def stripes(color: str, height: int, width: int) -> np.ndarray:
    """``(height, width, 3)`` vertical stripes starting at column phase 0: columns ``1, 2 (mod 4)`` in ``color``,
    ``3, 0`` in its complement. This phase is what the 2x downscale turns into plain grey."""
    columns = np.arange(width)
    inked = np.isin(columns % STRIPE_PERIOD, (1, 2))
    sign = np.where(inked, 1.0, -1.0)
    ramp = np.minimum(1.0, (np.minimum(columns, width - 1 - columns) + 0.5) / TAPER)
    amplitude = np.array(COLORS[color], np.float64) - GREY
    row = GREY + (sign * ramp)[:, None] * amplitude[None, :]
    return np.broadcast_to(np.rint(row), (height, width, 3)).astype(np.uint8)


def render(scene: AspectScene) -> Image.Image:
    image = Image.new("RGB", (scene.width, scene.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    shape_rects, box_rects = _layout(scene)
    draw_shapes(draw, scene.shapes, shape_rects)
    pixels = np.asarray(image).copy()
    for box in scene.boxes:
        top, left, h, w = box_rects[box.quadrant]
        pixels[top : top + h, left : left + w] = RIM
        inner = stripes(box.color, h - 2, w) if scene.details else np.full((h - 2, w, 3), GREY, np.uint8)
        pixels[top + 1 : top + h - 1, left : left + w] = inner
        pixels[top + 1 : top + h - 1, left] = RIM
        pixels[top + 1 : top + h - 1, left + w - 1] = RIM
    return Image.fromarray(pixels)


def box_rectangles(scene: AspectScene) -> dict[str, tuple[int, int, int, int]]:
    """Where each box is drawn (quadrant -> top, left, height, width), for tests and figures."""
    return _layout(scene)[1]


def sample_scene(rng: random.Random, kind: str, orientation: str) -> AspectScene:
    """One shape in one quadrant, then one box (``global``, ``detail``) or two of different colours
    (``detail_in_context``) in other quadrants; shape and box never share a quadrant."""
    height, width = ORIENTATIONS[orientation]
    quadrants = list(QUADRANTS)
    rng.shuffle(quadrants)
    colors = sorted(COLORS)
    shape = Shape(rng.choice(SHAPES), rng.choice(colors), quadrants[0])
    box_colors = rng.sample(colors, 2 if kind == "detail_in_context" else 1)
    boxes = tuple(Box(q, c) for q, c in zip(quadrants[1:], box_colors))
    return AspectScene(height, width, (shape,), boxes, seed=rng.randrange(1 << 30))


def generate_split(output: str | Path, split: str, count: int, *, seed: int = 0, questions_per_image: int = 1) -> Path:
    """``count`` images of ``split`` (kinds and orientations balanced: they cycle), LLaVA-format JSON like
    :func:`inf_llava.synthetic.dataset.generate_split`, plus each record's ``orientation``."""
    output = Path(output)
    (output / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"inf-llava-aspect/{seed}/{split}")
    records = []
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        orientation = ("wide", "tall")[(index // len(KINDS)) % 2]
        scene = sample_scene(rng, kind, orientation)
        if questions_per_image > 1:
            qas = training_questions(scene, kind, rng, questions_per_image)
        else:
            qas = questions(scene, kind, rng)[:1]
        sample_id = f"{split}-{index:06d}"
        records.append(write_sample(output, sample_id, render(scene), qas, kind, scene, orientation=orientation))
    return write_split(output, split, records)
