"""Draw the pictures of docs/dynamic-grids.md with the package's own crop figure (synthetic/visualize.py).

A model with the released view geometry (336-px views of 14-px patches; a narrow random tower, since the figure
shows pixels, not features) is built twice: with the official fixed 3x3 grid and with ``grid="dynamic"`` (the
official budget of 9 sub-images). A wide (1920x1080) and a tall (1080x1920) test scene go through the processor and
the encoder's own cropping; the figures show the canvas, the local tiles, the strided views and the low-resolution
view. Run: ``.venv/bin/python scripts/dynamic-grid-figures.py [docs/img]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from inf_llava import InfLlavaForConditionalGeneration
from inf_llava.presets import build_tiny_tokenizer, processor_for, small_config
from inf_llava.synthetic.visualize import figure

COLORS = [(220, 50, 47), (38, 139, 210), (133, 153, 0), (181, 137, 0), (108, 113, 196), (42, 161, 152)]


def scene(width: int, height: int) -> Image.Image:
    """A sky-to-ground gradient with numbered discs on a regular lattice and a caption: tiles show contiguous parts,
    strided views the whole scene."""
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / (height - 1)
        draw.line([(0, y), (width, y)], fill=(int(200 - 120 * t), int(225 - 90 * t), int(255 - 185 * t)))
    step = min(width, height) // 3
    font = ImageFont.load_default(size=step // 3)
    number = 1
    for cy in range(step // 2, height, step):
        for cx in range(step // 2, width, step):
            r = step // 3
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=COLORS[number % len(COLORS)], outline="white", width=8)
            draw.text((cx, cy), str(number), fill="white", font=font, anchor="mm")
            number += 1
    caption = ImageFont.load_default(size=step // 5)
    draw.text((width // 2, height - step // 10), f"{width} x {height}", fill="black", font=caption, anchor="ms")
    return image


def model(grid):
    tokenizer = build_tiny_tokenizer()
    config = small_config(tokenizer, view_size=336, patch_size=14, vision_width=32, vision_layers=2, grid=grid)
    torch.manual_seed(0)
    return InfLlavaForConditionalGeneration(config).eval(), processor_for(config, tokenizer)


def main(out: Path) -> None:
    dynamic, fixed = model("dynamic"), model(3)
    for name, (width, height) in {"wide": (1920, 1080), "tall": (1080, 1920)}.items():
        image = scene(width, height)
        for label, (m, p) in {"dynamic": dynamic, "fixed": fixed}.items():
            title = f"{label} grid: a {width}x{height} image"
            path = figure(m, p, image, out / f"dcm-{label}-{name}.png", title=title, attention=False)
            print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
