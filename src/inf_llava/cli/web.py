"""Open the web page: upload an image, chat with the model (answers stream in), and see the DCM crop layout, i.e.
the local tiles and global strided views the vision tower receives.

    inf-llava web --model DIR          (starts the server and opens http://127.0.0.1:8000/ in a browser)

The page is the one `inf-llava serve` shows at /; this command takes the same options.
"""

from __future__ import annotations

import argparse

from . import serve

NAME = "web"
HELP = "start the server and open its web page"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    serve.add_arguments(parser)
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser, just print the URL")


def run(args: argparse.Namespace) -> int:
    return serve.run(args, open_browser=not args.no_browser)
