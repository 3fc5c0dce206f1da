"""The paper's ablation on task v2: every variant (paper Tables 4 and 6, the official code's choices vs the paper's
wording, the low-resolution baseline) x several seeds, then docs/ablation.md with intervals and paired tests; with
--ship, the best-validated INF-LLaVA run becomes the package's demo model.

Finished runs are kept in the results file (docs/ablation.json), so rerunning resumes, across sessions too;
--report-only rewrites the page from it without training.
"""

from __future__ import annotations

import argparse

NAME = "ablation"
HELP = "the paper's ablation (10 variants x 5 seeds) on the synthetic task v2 (hours on 2 cores; resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", default="runs/ablation", help="data and checkpoints (may be deleted)")
    parser.add_argument("--results", default="docs/ablation.json", help="per-question results (kept)")
    parser.add_argument("--docs", default="docs", help="where ablation.md and its figures go")
    parser.add_argument("--variants", nargs="+", default=None, help="subset of the variants (default: all)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    parser.add_argument("--steps", type=int, default=None, help="stage-2 steps per run at most")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--findings", default=None, help="a markdown file to put at the top of the page")
    parser.add_argument("--ship", action="store_true", help="make the best-validated INF-LLaVA run the demo model")
    parser.add_argument("--report-only", action="store_true", help="rewrite the page from the results file")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..synthetic.v2 import experiment, report
    from ..synthetic.v2.variants import VARIANTS

    results_path = Path(args.results)
    if args.report_only:
        if not results_path.exists():
            raise ValueError(f"no results file {results_path}: run `inf-llava ablation` first")
        results = json.loads(results_path.read_text())
    else:
        variants = tuple(args.variants or VARIANTS)
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
        recipe = experiment.with_overrides(
            experiment.AblationRecipe(),
            steps=args.steps,
            train_images=args.train_images,
            test_images=args.test_images,
        )
        results = experiment.run_experiment(
            recipe, args.work_dir, results_path, variants, tuple(args.seeds), jobs=args.jobs, progress=not args.quiet
        )
    findings = Path(args.findings).read_text() if args.findings and Path(args.findings).exists() else ""
    print(f"wrote {report.write(results, args.docs, findings=findings)}")
    if args.ship:
        from ..synthetic.v2.ship import ship

        print(f"shipped {ship(results, args.work_dir)}")
    return 0
