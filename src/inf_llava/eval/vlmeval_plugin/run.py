"""VLMEvalKit's ``run.py`` with the INF-LLaVA models registered: every argument is VLMEvalKit's, plus
``--inf-llava NAME=PATH`` (repeatable) to register a model directory or hub id under a name.

    python -m inf_llava.eval.vlmeval_plugin.run --model INF-LLaVA-demo --data MMBench_DEV_EN --work-dir outputs
    python -m inf_llava.eval.vlmeval_plugin.run --inf-llava mine=./stage2 --model mine --data SEEDBench_IMG AI2D_TEST
"""

from __future__ import annotations

import argparse
import sys

from . import register


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--inf-llava", action="append", default=[], metavar="NAME=PATH")
    ours, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    register()
    for item in ours.inf_llava:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"error: --inf-llava takes NAME=PATH, got {item!r}")
        register(name, model_path=path)
    import vlmeval.run

    sys.argv = [sys.argv[0], *rest]
    vlmeval.run.load_env()
    vlmeval.run.main()


if __name__ == "__main__":
    main()
