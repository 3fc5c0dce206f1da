"""Synthetic high-resolution scenes: large shapes (visible at any resolution) and boxes whose colour is visible
only at full resolution.

An image is ``n * S`` pixels square (the model's high-resolution size). The model's low-resolution view is the
bicubic ``1/n`` downscale, which for odd ``n`` is an exact pick of the pixels at phase ``((n-1)/2, (n-1)/2)`` (spec
section 6). A box is a white square filled with a fine coloured mesh: every pixel is inked except those at the
centre phase, so at full resolution the box is 8/9 coloured and in the low-resolution view it is plain white whatever
its colour: detail questions are unanswerable from that view by construction (:func:`base_view` +
:func:`strip_details` let tests check exactly that). Shapes and the box outlines cover every phase and are visible
in all views.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image, ImageDraw

COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")
BACKGROUND = (200, 200, 200)
BOX_FILL = (250, 250, 250)
BOX_FRACTION = 1 / 3  # box side as a fraction of the image side


@dataclass(frozen=True)
class Shape:
    kind: str
    color: str
    quadrant: str


@dataclass(frozen=True)
class Box:
    """A white box in a quadrant holding a fine mesh of ``color``."""

    quadrant: str
    color: str


@dataclass(frozen=True)
class Scene:
    size: int  # image side in pixels (n * S)
    grid: int  # n; contents avoid the phase ((n-1)/2, (n-1)/2)
    shapes: tuple[Shape, ...] = ()
    boxes: tuple[Box, ...] = ()
    seed: int = 0  # placement jitter
    details: bool = field(default=True)  # False renders boxes empty (for checks)


def strip_details(scene: Scene) -> Scene:
    return replace(scene, details=False)


def _quadrant_origin(quadrant: str, size: int) -> tuple[int, int]:
    half = size // 2
    top = 0 if quadrant.startswith("top") else half
    left = 0 if quadrant.endswith("left") else half
    return top, left


def _layout(scene: Scene) -> tuple[dict[str, tuple[int, int, int, int]], dict[str, tuple[int, int, int, int]]]:
    """Pixel rectangles (top, left, height, width) of shapes and boxes, jittered inside their quadrants."""
    rng = random.Random(scene.seed)
    n = scene.grid
    half = scene.size // 2
    box_side = _round_to(max(5 * n, int(scene.size * BOX_FRACTION)), n)
    shape_side = _round_to(int(half * 0.7), n)
    shapes, boxes = {}, {}
    for shape in scene.shapes:
        top, left = _quadrant_origin(shape.quadrant, scene.size)
        slack = half - shape_side
        shapes[shape.quadrant] = (top + rng.randint(0, slack), left + rng.randint(0, slack), shape_side, shape_side)
    for box in scene.boxes:
        top, left = _quadrant_origin(box.quadrant, scene.size)
        slack = (half - box_side) // n
        boxes[box.quadrant] = (top + n * rng.randint(0, slack), left + n * rng.randint(0, slack), box_side, box_side)
    return shapes, boxes


def _round_to(value: int, n: int) -> int:
    return max(n, value - value % n)


def draw_shapes(draw: ImageDraw.ImageDraw, shapes, rects: dict[str, tuple[int, int, int, int]]) -> None:
    """Fill each shape in its quadrant's rectangle (``quadrant -> top, left, height, width``)."""
    for shape in shapes:
        top, left, h, w = rects[shape.quadrant]
        color = COLORS[shape.color]
        if shape.kind == "circle":
            draw.ellipse((left, top, left + w - 1, top + h - 1), fill=color)
        elif shape.kind == "square":
            draw.rectangle((left, top, left + w - 1, top + h - 1), fill=color)
        else:
            draw.polygon([(left + w // 2, top), (left, top + h - 1), (left + w - 1, top + h - 1)], fill=color)


def render(scene: Scene) -> Image.Image:
    """Draw the scene as an RGB image of ``scene.size`` pixels."""
    image = Image.new("RGB", (scene.size, scene.size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    shape_rects, box_rects = _layout(scene)
    draw_shapes(draw, scene.shapes, shape_rects)
    pixels = np.asarray(image).copy()
    for box in scene.boxes:
        top, left, h, w = box_rects[box.quadrant]
        pixels[top : top + h, left : left + w] = BOX_FILL
        if scene.details:
            pixels[_mesh(top, left, h, w, scene.grid)] = COLORS[box.color]
    return Image.fromarray(pixels)


def _mesh(top: int, left: int, h: int, w: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the box's mesh: every pixel inside a one-pixel margin except those at the centre phase ``c``
    (the ones the low-resolution view samples)."""
    c = (n - 1) // 2
    ys, xs = np.mgrid[top + 1 : top + h - 1, left + 1 : left + w - 1]
    inked = (ys % n != c) | (xs % n != c)
    return ys[inked], xs[inked]


def base_view(image: Image.Image, grid: int) -> np.ndarray:
    """The pixels the model's low-resolution view is made of (phase ((n-1)/2, (n-1)/2) of the image)."""
    c = (grid - 1) // 2
    return np.array(image)[c::grid, c::grid]
