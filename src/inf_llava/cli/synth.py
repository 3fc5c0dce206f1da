"""Generate the synthetic high-resolution VQA task as LLaVA-format JSON + images.

Three question kinds: detail (the colour of a box's fine mesh, invisible in the low-resolution view by
construction), global (the large shape's colour, kind and place) and detail-in-context (where the box of a given
colour is, among two).
"""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "generate the synthetic high-resolution VQA dataset"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", required=True, help="output directory (JSON files + images/)")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--validation", type=int, default=300)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=96, help="the model's high-resolution size (n * S)")
    parser.add_argument("--grid", type=int, default=3)
    parser.add_argument("--questions-per-image", type=int, default=3, help="question turns per training image")


def run(args: argparse.Namespace) -> int:
    from ..synthetic import generate

    paths = generate(
        args.output,
        train=args.train,
        validation=args.validation,
        test=args.test,
        seed=args.seed,
        image_size=args.image_size,
        grid=args.grid,
        questions_per_image=args.questions_per_image,
    )
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0
