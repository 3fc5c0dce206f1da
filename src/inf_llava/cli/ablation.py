"""Train the synthetic task's model and the paper's ablation variants from scratch on CPU, report, and ship.

Variants (same data, steps, batch and seeds): low-res baseline, local crops only, global crops only, both crops
added element-wise (no DEM), and DCM + DEM (INF-LLaVA). Writes docs/ablation.md (+ chart); with --ship copies the
best INF-LLaVA run into the package as the demo model. Rerunning skips finished runs.
"""

from __future__ import annotations

import argparse

NAME = "ablation"
HELP = "train + evaluate the ablation variants on the synthetic task (hours on CPU)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", default="runs/ablation", help="data, runs and results.json")
    parser.add_argument("--docs", default="docs", help="where ablation.md and img/ablation.png go")
    parser.add_argument("--variants", nargs="+", default=None, help="subset of: low_res local global add inf_llava")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--ship", action="store_true", help="copy the best INF-LLaVA run into the package")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from results.json")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..synthetic import recipe as recipes
    from ..synthetic import report
    from ..synthetic.ship import ship

    work_dir = Path(args.work_dir)
    recipe = recipes.with_overrides(
        recipes.Recipe(), steps=args.steps, train_images=args.train_images, batch_size=args.batch_size, lr=args.lr
    )
    if args.report_only:
        results = json.loads((work_dir / "results.json").read_text())
    else:
        variants = tuple(args.variants or recipes.VARIANTS)
        unknown = set(variants) - set(recipes.VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(recipes.VARIANTS)}")
        results = recipes.run_ablation(recipe, work_dir, variants, tuple(args.seeds), progress=not args.quiet)
    path = report.write(results, args.docs, work_dir / "data" / "test.json")
    print(f"wrote {path}")
    if args.ship:
        print(f"shipped {ship(results, work_dir)}")
    return 0
