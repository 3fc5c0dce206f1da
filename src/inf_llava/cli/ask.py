"""Ask one question about one image; the answer goes to stdout.

    inf-llava ask --image photo.jpg --question "What is written on the sign?"
    inf-llava ask --model DIR --image photo.jpg --question "Describe it." --stream --max-new-tokens 256

Without --image the question goes to the language model alone. Greedy decoding unless --temperature > 0.
"""

from __future__ import annotations

import argparse

from ._common import add_generation_arguments, add_image_arguments, add_model_arguments

NAME = "ask"
HELP = "answer one question about an image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=None, metavar="PATH", help="the image (any format Pillow reads)")
    parser.add_argument("--question", "-q", required=True, help="the question")
    parser.add_argument("--stream", action="store_true", help="print the answer as it is generated")
    add_image_arguments(parser)
    add_generation_arguments(parser)
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..images import load_image
    from ._common import engine_from_args, generation_settings

    if not args.question.strip():
        raise ValueError("--question is empty")
    # The image is checked before the (slower) model load, so a bad file fails fast.
    image = load_image(args.image, max_pixels=args.max_image_pixels) if args.image else None
    settings = generation_settings(args)
    engine = engine_from_args(args)
    messages = engine.question(args.question, with_image=image is not None)
    images = [image] if image is not None else []
    if args.stream:
        for piece in engine.stream(messages, images, settings):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
    else:
        print(engine.complete([messages], [images], settings)[0].text)
    return 0
