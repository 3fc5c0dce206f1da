"""Answer a JSONL file of questions, batched, resumable.

    inf-llava predict --input questions.jsonl --output answers.jsonl --batch-size 8

Input rows: {"id": ..., "image": "path/relative/to/the/input.jpg", "question": "..."}. Output rows, in input order:
{"id", "question", "answer", "finish_reason", "prompt_tokens", "completion_tokens"}. Running again with the same
output skips the ids already answered (an interrupted run resumes without duplicates or losses).

A malformed input file stops before any generation with one error naming the file, line and id. A bad sample (e.g. a
missing or corrupt image) gets an output row with "answer": null and "error": "...", a warning on stderr, and the
command exits with status 1 at the end.
"""

from __future__ import annotations

import argparse

from ._common import add_generation_arguments, add_image_arguments, add_model_arguments

NAME = "predict"
HELP = "answer a JSONL file of image questions (batched, resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, metavar="JSONL", help='rows {"id", "image", "question"}')
    parser.add_argument("--output", required=True, metavar="JSONL", help="answers (appended; resumes)")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument(
        "--image-root", default=None, metavar="DIR", help="base of relative image paths (default: the input's folder)"
    )
    add_image_arguments(parser)
    add_generation_arguments(parser)
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from ..predict import predict, read_questions
    from ._common import engine_from_args, generation_settings

    if Path(args.input).resolve() == Path(args.output).resolve():
        raise ValueError("--output must differ from --input")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    questions = read_questions(args.input, args.image_root)  # the whole file is checked before the model loads
    settings = generation_settings(args)

    def warn(question, message: str) -> None:
        print(f"warning: {args.input} line {question.line} (id {question.id!r}): {message}", file=sys.stderr)

    summary = predict(
        engine_from_args(args),
        questions,
        args.output,
        batch_size=args.batch_size,
        settings=settings,
        max_image_pixels=args.max_image_pixels,
        on_error=warn,
    )
    print(
        f"{summary.answered} answered, {summary.failed} failed, {summary.skipped} already in {args.output} "
        f"({summary.total} questions)",
        file=sys.stderr,
    )
    return 1 if summary.failed else 0
