"""``inf-llava``: one console script; each subcommand lives in its own module of this package.

A command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; it is found by
scanning this package, keeps heavy imports inside ``run`` and holds no logic beyond parsing and calling the library.
User errors (bad input, missing files, missing extras) print one ``error: ...`` line and exit with status 2;
set ``INF_LLAVA_DEBUG=1`` to see the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence


def _command_modules():
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            yield module


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="inf-llava", description="INF-LLaVA: high-resolution multimodal LLM")
    parser.add_argument("--version", action="version", version=f"inf-llava {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        command = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars are noise on a terminal
    from ..runtime import tune_cpu_allocator

    tune_cpu_allocator()  # large CPU tensors reuse heap pages instead of page-faulting fresh mmaps
    if os.environ.get("INF_LLAVA_DEBUG"):
        return int(args._run(args) or 0)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        print(f"error: {exc} (install the matching extra, e.g. pip install 'inf-llava[serve]')", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
