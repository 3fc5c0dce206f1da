"""Chat about an image, several turns, in the terminal (or from piped lines).

    inf-llava chat --image photo.jpg
    > What is in the picture?
    > /image other.png      (load another image: a new conversation)
    > /reset                (forget the turns, keep the image)
    > /quit

Answers stream to stdout; messages about commands and errors go to stderr, so `... | inf-llava chat` prints just the
answers, one per line.
"""

from __future__ import annotations

import argparse

from ._common import add_generation_arguments, add_image_arguments, add_model_arguments

NAME = "chat"
HELP = "interactive multi-turn chat about an image"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", default=None, metavar="PATH", help="the image to start with")
    add_image_arguments(parser)
    add_generation_arguments(parser)
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from ..chat import ChatSession, repl
    from ._common import engine_from_args, generation_settings

    settings = generation_settings(args)
    session = ChatSession(engine_from_args(args), settings, max_image_pixels=args.max_image_pixels)
    if args.image:
        session.set_image(args.image)
    repl(session)
    return 0
