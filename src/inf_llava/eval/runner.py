"""``inf-llava eval run`` / ``score``: generate predictions (batched, resumable, sharded), judge where the benchmark
needs it, score, and write everything next to each other.

Output folder::

    run.json          what made the predictions (benchmark, model, template, max_new_tokens): a resumed run must match
    predictions.jsonl {"key", "prediction", "finish_reason", ...} per sample, in dataset order
    reviews.jsonl     LLaVA-Bench only: the judge's raw review per sample (resumable as well)
    results.jsonl     per-sample scoring (parsed answers, correctness)
    metrics.json      the aggregate: ``score`` (0-100) plus breakdowns, counts and notes

Each row is appended durably as soon as it is generated, so an interrupted run resumes where it stopped. Under
``torchrun`` each rank writes ``predictions.rank<r>-of-<n>.jsonl`` for its shard ``samples[r::n]``; rank 0 merges
them into ``predictions.jsonl`` in dataset order, so the merged file is the same whatever the number of processes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..errors import DataError
from ..images import DEFAULT_MAX_PIXELS
from ..jsonl import JsonlAppender, atomic_write_text, completed_keys, read_jsonl
from ..processing.templates import get_template
from .base import Benchmark
from .data import EvalData, Sample
from .distributed import DistContext
from .judge_client import OpenAIJudge
from .prompting import render_eval_prompt
from .scoring.judge import parse_score

PREDICTIONS_FILE = "predictions.jsonl"
REVIEWS_FILE = "reviews.jsonl"
RESULTS_FILE = "results.jsonl"
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
_PART = re.compile(r"^predictions\.rank(\d+)-of-(\d+)\.jsonl$")
# run.json fields a resumed run must agree on (anything else may change between runs).
_IDENTITY = ("benchmark", "model", "template", "max_new_tokens")


@dataclass(frozen=True)
class RunSettings:
    batch_size: int = 1
    max_new_tokens: int | None = None  # None: the benchmark's (lmms-eval's) value
    max_image_pixels: int | None = DEFAULT_MAX_PIXELS
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")


def run_evaluation(
    engine: Any,
    data: EvalData,
    output: str | Path,
    *,
    model_label: str,
    context: DistContext | None = None,
    settings: RunSettings | None = None,
    judge: OpenAIJudge | None = None,
) -> dict[str, Any] | None:
    """Generate, merge, judge and score. Returns the metrics on rank 0 (None on other ranks)."""
    context = context or DistContext()
    settings = settings or RunSettings()
    benchmark = data.benchmark
    out = Path(output)
    max_new_tokens = settings.max_new_tokens or benchmark.max_new_tokens
    identity = {
        "benchmark": benchmark.name,
        "model": model_label,
        "template": engine.template,
        "max_new_tokens": max_new_tokens,
        "profile": benchmark.profile,
        "data": data.source,
    }
    problem = _prepare_output(out, identity) if context.is_main else None
    problem = context.broadcast(problem)
    if problem:
        raise DataError(problem)
    generate_predictions(engine, data, out, context=context, settings=settings, max_new_tokens=max_new_tokens)
    context.barrier()
    if not context.is_main:
        return None
    predictions = merge_predictions(out, data)
    reviews = collect_reviews(data, predictions, out, judge, progress=settings.progress)
    metrics = score_predictions(data, predictions, reviews, judge=judge, results_path=out / RESULTS_FILE)
    metrics.update({k: v for k, v in identity.items() if k not in metrics})
    metrics["world_size"] = context.world_size
    atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    return metrics


def _prepare_output(out: Path, identity: Mapping[str, Any]) -> str | None:
    """Record what produces the predictions; refuse to mix runs in one folder. Returns an error message or None."""
    path = out / RUN_FILE
    if path.is_file():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            return f"{path}: unreadable; delete it or choose another --output"
        for name in _IDENTITY:
            if previous.get(name) != identity[name]:
                return (
                    f"{out} holds predictions made with {name}={previous.get(name)!r}, not {identity[name]!r}: "
                    "choose another --output (or delete the folder) to start a new run"
                )
        return None
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(dict(identity), indent=2, ensure_ascii=False) + "\n")
    return None


def part_path(out: Path, context: DistContext) -> Path:
    if not context.distributed:
        return out / PREDICTIONS_FILE
    return out / f"predictions.rank{context.rank}-of-{context.world_size}.jsonl"


def generate_predictions(
    engine: Any,
    data: EvalData,
    out: Path,
    *,
    context: DistContext,
    settings: RunSettings,
    max_new_tokens: int,
) -> int:
    """Answer this rank's shard, skipping samples already answered. Returns the number generated."""
    from ..inference import GenerationSettings

    benchmark = data.benchmark
    own = part_path(out, context)
    done = completed_keys(own, key="key")  # also drops a torn last line of this rank's own file
    for other in _prediction_files(out):  # merged rows, and rank files left by a run with another process count
        match = _PART.match(other.name)
        if other != own and (match is None or int(match.group(2)) != context.world_size):
            done |= _keys(other)
    todo = [s for s in context.shard(data.samples) if s.key not in done]
    template = get_template(engine.template)
    generation = GenerationSettings(max_new_tokens=max_new_tokens)
    label = (
        benchmark.name if not context.distributed else f"{benchmark.name} [rank {context.rank}/{context.world_size}]"
    )
    bar = tqdm(total=len(todo), desc=label, unit="sample", disable=not (settings.progress and context.is_main))
    with JsonlAppender(own) as writer, bar:
        for start in range(0, len(todo), settings.batch_size):
            batch = todo[start : start + settings.batch_size]
            images = [sample.images(settings.max_image_pixels) for sample in batch]
            prompts = [render_eval_prompt(template, _prompt(benchmark, s), len(i)) for s, i in zip(batch, images)]
            for sample, completion in zip(batch, engine.complete(prompts, images, generation)):
                writer.write(
                    {
                        "key": sample.key,
                        "prediction": completion.text,
                        "finish_reason": completion.finish_reason,
                        "prompt_tokens": completion.prompt_tokens,
                        "completion_tokens": completion.completion_tokens,
                    }
                )
            bar.update(len(batch))
    return len(todo)


def _prompt(benchmark: Benchmark, sample: Sample) -> str:
    try:
        return benchmark.build_prompt(sample.doc)
    except (KeyError, ValueError, TypeError, SyntaxError) as exc:
        raise DataError(f"{sample.origin}: cannot build the prompt ({type(exc).__name__}: {exc})") from None


def _prediction_files(out: Path) -> list[Path]:
    """``predictions.jsonl`` then the rank files, by (rank, world size): the order in which rows take precedence."""
    parts = sorted(
        (p for p in out.iterdir() if _PART.match(p.name)), key=lambda p: tuple(map(int, _PART.match(p.name).groups()))
    )
    merged = out / PREDICTIONS_FILE
    return ([merged] if merged.is_file() else []) + parts


def _keys(path: Path) -> set[str]:
    """Keys of a predictions file without modifying it (a torn last line, still being written, is ignored)."""
    keys = set()
    for line in path.read_bytes().split(b"\n"):
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "key" in row:
            keys.add(str(row["key"]))
    return keys


def _clean_rows(path: Path) -> list[dict[str, Any]]:
    completed_keys(path, key="key")  # drops a torn last line left by a crash
    rows = []
    for number, row in read_jsonl(path):
        if "key" not in row:
            raise DataError(f"{path} line {number}: a prediction row needs a 'key'")
        rows.append(row)
    return rows


def merge_predictions(out: Path, data: EvalData) -> dict[str, dict[str, Any]]:
    """Fold the rank files into ``predictions.jsonl`` (first occurrence of a key wins), in dataset order, and
    delete them. Rows of keys outside the current samples (an earlier run without ``--limit``) are kept, last."""
    merged_path = out / PREDICTIONS_FILE
    files = _prediction_files(out)
    parts = [p for p in files if p != merged_path]
    rows: dict[str, dict[str, Any]] = {}
    for path in files:
        for row in _clean_rows(path):
            rows.setdefault(str(row["key"]), row)
    sample_keys = [s.key for s in data.samples]
    known = set(sample_keys)
    order = [k for k in sample_keys if k in rows] + [k for k in rows if k not in known]
    ordered = {k: rows[k] for k in order}
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ordered.values())
    if parts or not merged_path.is_file() or merged_path.read_text(encoding="utf-8") != text:
        atomic_write_text(merged_path, text)
    for path in parts:
        path.unlink()
    return ordered


def read_predictions(path: str | Path) -> dict[str, dict[str, Any]]:
    """A predictions JSONL (``key`` + ``prediction`` per row), for offline rescoring."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such predictions file")
    rows: dict[str, dict[str, Any]] = {}
    for number, row in read_jsonl(path):
        if "key" not in row or not isinstance(row.get("prediction"), str):
            raise DataError(f"{path} line {number}: expected {{'key': ..., 'prediction': '...'}}")
        key = str(row["key"])
        if key in rows:
            raise DataError(f"{path} line {number}: key {key!r} appears twice")
        rows[key] = row
    return rows


def _fingerprint(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def collect_reviews(
    data: EvalData,
    predictions: Mapping[str, Mapping[str, Any]],
    out: Path,
    judge: OpenAIJudge | None,
    *,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """The judge's reviews of the predictions (LLaVA-Bench), from ``reviews.jsonl`` and, for predictions not yet
    reviewed (or whose text changed), from ``judge``. Each new review is appended as soon as it arrives."""
    benchmark = data.benchmark
    if not benchmark.uses_judge:
        return {}
    path = out / REVIEWS_FILE
    reviews: dict[str, dict[str, Any]] = {}
    if path.is_file():
        for row in _clean_rows(path):
            reviews[str(row["key"])] = row  # a later review of the same key supersedes
    todo = []
    for sample in data.samples:
        row = predictions.get(sample.key)
        if row is None:
            continue
        review = reviews.get(sample.key)
        if review is None or review.get("prediction_sha1") != _fingerprint(row["prediction"]):
            reviews.pop(sample.key, None)
            todo.append(sample)
    if todo and judge is not None:
        bar = tqdm(todo, desc=f"{benchmark.name} judge", unit="review", disable=not progress)
        with JsonlAppender(path) as writer:
            for sample in bar:
                prediction = predictions[sample.key]["prediction"]
                review, model = judge.review(benchmark.judge_content(sample.doc, prediction))  # type: ignore[attr-defined]
                row = {
                    "key": sample.key,
                    "review": review,
                    "scores": parse_score(review),
                    "judge_model": model,
                    "prediction_sha1": _fingerprint(prediction),
                }
                writer.write(row)
                reviews[sample.key] = row
    return reviews


def score_predictions(
    data: EvalData,
    predictions: Mapping[str, Mapping[str, Any]],
    reviews: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    judge: OpenAIJudge | None = None,
    results_path: Path | None = None,
) -> dict[str, Any]:
    """Run ``process_result`` over every sample that has a prediction and ``aggregate`` the results."""
    benchmark = data.benchmark
    reviews = reviews or {}
    results, keys, missing = [], [], 0
    for sample in data.samples:
        row = predictions.get(sample.key)
        if row is None:
            missing += 1
            continue
        doc: Mapping[str, Any] = sample.doc
        if benchmark.uses_judge and sample.key in reviews:
            doc = {**sample.doc, "review": reviews[sample.key]["review"]}
        try:
            results.append(benchmark.process_result(doc, row["prediction"]))
        except (KeyError, ValueError, TypeError, SyntaxError) as exc:
            raise DataError(f"{sample.origin}: cannot score ({type(exc).__name__}: {exc})") from None
        keys.append(sample.key)
    known = {s.key for s in data.samples}
    unmatched = sum(1 for key in predictions if key not in known)
    if not results:
        raise DataError(
            f"none of the {len(predictions)} predictions matches a sample of {data.source} "
            f"({len(data.samples)} samples): wrong --data or --benchmark?"
        )
    if benchmark.name.startswith("mmbench") and judge is not None:
        aggregate = benchmark.aggregate(results, judge=judge.mmbench_letter)  # type: ignore[call-arg]
    else:
        aggregate = benchmark.aggregate(results)
    notes = list(data.notes)
    if missing:
        notes.append(f"{missing} of {len(data.samples)} samples have no prediction and were not scored")
    if unmatched:
        notes.append(f"{unmatched} prediction(s) match no sample of the data and were ignored")
    if benchmark.uses_judge:
        judged = {reviews[k].get("judge_model") for k in keys if k in reviews}
        aggregate["judge_models"] = sorted(str(m) for m in judged)
        if aggregate.get("missing_reviews"):
            notes.append(
                f"{aggregate['missing_reviews']} prediction(s) have no judge review (scored [-1, -1], as upstream); "
                "pass --judge-url to review them"
            )
            if aggregate["missing_reviews"] == len(results):
                aggregate["score"] = None
    if results_path is not None:
        lines = "".join(
            json.dumps({"key": k, **r}, ensure_ascii=False, default=str) + "\n" for k, r in zip(keys, results)
        )
        atomic_write_text(results_path, lines)
    return {
        "benchmark": benchmark.name,
        "title": benchmark.title,
        "paper_column": benchmark.paper_column,
        "profile": benchmark.profile,
        **aggregate,
        "samples": len(data.samples),
        "scored": len(results),
        "missing_predictions": missing,
        "notes": notes,
    }


__all__ = [
    "METRICS_FILE",
    "PREDICTIONS_FILE",
    "RESULTS_FILE",
    "REVIEWS_FILE",
    "RUN_FILE",
    "RunSettings",
    "collect_reviews",
    "generate_predictions",
    "merge_predictions",
    "read_predictions",
    "run_evaluation",
    "score_predictions",
]
