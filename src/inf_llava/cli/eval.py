"""Evaluate on the paper's benchmarks with the official scoring (lmms-eval, July 2024, unless --profile says
otherwise).

  inf-llava eval run --benchmark mmbench_en --data MMBench_DEV_EN.tsv --model DIR [--batch-size 8] [--limit 100]
  inf-llava eval score --benchmark mmbench_en --data MMBench_DEV_EN.tsv --predictions out/predictions.jsonl
  inf-llava eval report eval-results/
  torchrun --nproc-per-node 8 -m inf_llava eval run ...   (each rank answers its shard; rank 0 merges and scores)

Benchmarks: scienceqa_img, okvqa, seedbench, mmbench_en, mmbench_cn, ai2d, llava_bench_wild, mmmu_val.
--data: a file (.tsv/.parquet/.arrow/.jsonl/.json), a folder (official layout, hub snapshot, save_to_disk) or a hub
id (lmms-lab/MMBench; needs a network). llava_bench_wild needs a judge: --judge-url (any OpenAI-compatible
endpoint), --judge-model, key from $OPENAI_API_KEY (or --judge-api-key-env).
"""

from __future__ import annotations

import argparse

from ._common import add_model_arguments

NAME = "eval"
HELP = "evaluate on the paper's benchmarks (run / score / report)"


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval import BENCHMARKS, DEFAULT_PROFILE, PROFILES

    parser.add_argument("--benchmark", required=True, choices=BENCHMARKS, help="benchmark name")
    parser.add_argument("--data", required=True, help="data file, folder or hub dataset id")
    parser.add_argument("--split", default=None, help="split to pick from a folder or the hub (default: the paper's)")
    parser.add_argument("--image-root", default=None, help="folder of the images referenced by file name")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N samples")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, choices=PROFILES, help="scoring protocol")


def _add_judge_arguments(parser: argparse.ArgumentParser) -> None:
    from ..eval.judge_client import DEFAULT_JUDGE_MODEL, DEFAULT_KEY_ENV

    group = parser.add_argument_group("judge (LLaVA-Bench reviews; MMBench's optional matching fallback)")
    group.add_argument("--judge-url", default=None, help="base URL of an OpenAI-compatible API, e.g. .../v1")
    group.add_argument("--judge-model", default=DEFAULT_JUDGE_MODEL, help="judge model name")
    group.add_argument("--judge-api-key-env", default=DEFAULT_KEY_ENV, help="environment variable with the API key")
    group.add_argument("--judge-max-retries", type=int, default=5, help="retries per request (with back-off)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="eval_command", metavar="{run,score,report}", required=True)
    run_parser = sub.add_parser("run", help="generate predictions, judge if needed, score")
    _add_data_arguments(run_parser)
    add_model_arguments(run_parser)
    run_parser.add_argument("--batch-size", type=int, default=1, help="samples per generate() call (left-padded)")
    run_parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the benchmark's")
    run_parser.add_argument("--output", default=None, help="output folder (default: eval-results/<model>/<benchmark>)")
    run_parser.add_argument("--max-image-pixels", type=int, default=None, help="refuse larger images (default 64 MP)")
    run_parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_judge_arguments(run_parser)

    score_parser = sub.add_parser("score", help="rescore a predictions file offline")
    _add_data_arguments(score_parser)
    score_parser.add_argument("--predictions", required=True, help="predictions JSONL ({'key', 'prediction'} rows)")
    score_parser.add_argument("--output", default=None, help="write the metrics JSON here (default: print only)")
    _add_judge_arguments(score_parser)

    report_parser = sub.add_parser("report", help="markdown table of runs next to the paper's Table 1")
    report_parser.add_argument("paths", nargs="+", metavar="DIR", help="run folders (searched for metrics.json)")


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "score": _score, "report": _report}[args.eval_command](args)


def _judge(args: argparse.Namespace):
    if not args.judge_url:
        return None
    from ..eval.judge_client import JudgeConfig, OpenAIJudge

    config = JudgeConfig(args.judge_url, args.judge_model, args.judge_api_key_env, max_retries=args.judge_max_retries)
    return OpenAIJudge(config)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..assets import resolve_model_path
    from ..eval import get_benchmark
    from ..eval.data import load_eval_data
    from ..eval.distributed import device_for_rank, init_distributed, shutdown_distributed
    from ..eval.report import summary
    from ..eval.runner import RunSettings, run_evaluation
    from ..images import DEFAULT_MAX_PIXELS
    from ._common import engine_from_args

    benchmark = get_benchmark(args.benchmark, args.profile)
    settings = RunSettings(
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        max_image_pixels=args.max_image_pixels or DEFAULT_MAX_PIXELS,
        progress=not args.no_progress,
    )
    judge = _judge(args)
    model_path = resolve_model_path(args.model)
    output = Path(args.output or Path("eval-results") / (Path(model_path).name or "model") / benchmark.name)
    data = load_eval_data(benchmark, args.data, split=args.split, image_root=args.image_root, limit=args.limit)
    context = init_distributed()
    try:
        args.device = device_for_rank(args.device, context)
        engine = engine_from_args(args)
        metrics = run_evaluation(
            engine, data, output, model_label=model_path, context=context, settings=settings, judge=judge
        )
    finally:
        shutdown_distributed()
    if metrics is not None:
        print(summary(metrics))
        print(f"predictions and metrics: {output}")
    return 0


def _score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..eval import get_benchmark
    from ..eval.data import load_eval_data
    from ..eval.report import summary
    from ..eval.runner import collect_reviews, read_predictions, score_predictions
    from ..jsonl import atomic_write_text

    benchmark = get_benchmark(args.benchmark, args.profile)
    predictions = read_predictions(args.predictions)
    data = load_eval_data(benchmark, args.data, split=args.split, image_root=args.image_root, limit=args.limit)
    judge = _judge(args)
    reviews = collect_reviews(data, predictions, Path(args.predictions).parent, judge, progress=True)
    metrics = score_predictions(data, predictions, reviews, judge=judge)
    metrics["predictions"] = str(args.predictions)
    if args.output:
        atomic_write_text(args.output, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    print(summary(metrics))
    print(json.dumps({k: v for k, v in metrics.items() if k != "notes"}, indent=2, ensure_ascii=False))
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..eval.report import markdown_table

    print(markdown_table(args.paths), end="")
    return 0
