"""Fixed 3x3 vs dynamic DCM grids on the wide-and-tall synthetic task: train both arms for every seed, then rewrite
the comparison in docs/dynamic-grids.md (table with 95% intervals and paired tests, figures).

Finished runs are kept in the results file (docs/dynamic-grids.json), so rerunning resumes, across sessions too;
--report-only rewrites the page from it without training.
"""

from __future__ import annotations

import argparse

NAME = "aspect"
HELP = "fixed vs dynamic DCM grids on wide/tall synthetic scenes (about an hour on 2 cores)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--work-dir", default="runs/aspect", help="data and checkpoints (may be deleted)")
    parser.add_argument("--results", default="docs/dynamic-grids.json", help="per-question results (kept)")
    parser.add_argument("--docs", default="docs", help="where dynamic-grids.md and its figures are")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--arms", nargs="+", default=None, help="subset of: fixed dynamic")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    parser.add_argument("--steps", type=int, default=None, help="stage-2 steps per run")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="stage-1 steps per run")
    parser.add_argument("--train-images", type=int, default=None)
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--report-only", action="store_true", help="rewrite the page from the results file")
    parser.add_argument("--quiet", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..synthetic import aspect_experiment as experiment
    from ..synthetic import aspect_report

    results_path = Path(args.results)
    if args.report_only:
        if not results_path.exists():
            raise ValueError(f"no results file {results_path}: run `inf-llava aspect` first")
        results = json.loads(results_path.read_text())
    else:
        arms = tuple(args.arms or experiment.ARMS)
        unknown = set(arms) - set(experiment.ARMS)
        if unknown:
            raise ValueError(f"unknown arm(s) {sorted(unknown)}; choose from {', '.join(experiment.ARMS)}")
        recipe = experiment.with_overrides(
            experiment.AspectRecipe(),
            steps=args.steps,
            pretrain_steps=args.pretrain_steps,
            train_images=args.train_images,
            test_images=args.test_images,
        )
        results = experiment.run_experiment(
            recipe, args.work_dir, results_path, arms, tuple(args.seeds), jobs=args.jobs, progress=not args.quiet
        )
    print(f"wrote {aspect_report.write(results, args.docs)}")
    return 0
