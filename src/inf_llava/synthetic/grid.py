"""What every synthetic grid experiment shares (``make aspect``, ``make ablation``): resumable per-question results,
greedy answering of a split, learning curves, and a pool of one-thread workers with a progress bar.

A grid is a set of runs keyed ``"{arm}/seed{seed}"``. Results accumulate in one JSON file, rewritten after every
finished run, tagged with the recipe that made them (a different recipe starts a fresh file: runs of different
recipes are never mixed). The work directory with data and checkpoints can be deleted at any time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..jsonl import atomic_write_text


def run_key(arm: str, seed: int) -> str:
    return f"{arm}/seed{seed}"


def load_results(path: Path, recipe) -> dict[str, Any]:
    """The results file for ``recipe`` (a dataclass), or a fresh one if the file holds another recipe's runs."""
    results = json.loads(path.read_text()) if path.exists() else {}
    if results.get("recipe") != asdict(recipe):
        results = {"recipe": asdict(recipe), "runs": {}}
    return results


def prepare_splits(recipe, directory: Path, task: str, generate_split, **fields) -> dict[str, Path]:
    """The train / validation / test splits of ``recipe`` (``data_seed``, ``*_images``, ``questions_per_image``),
    made by ``generate_split(directory, split, count, seed=, questions_per_image=, **fields)`` once per data setting
    (reused when ``directory`` holds the same, stamped in ``data.json``)."""
    import shutil

    counts = {"train": recipe.train_images, "validation": recipe.validation_images, "test": recipe.test_images}
    stamp = {
        "task": task,
        "seed": recipe.data_seed,
        **fields,
        **counts,
        "questions_per_image": recipe.questions_per_image,
    }
    paths = {split: directory / f"{split}.json" for split in counts}
    stamp_file = directory / "data.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp and all(p.exists() for p in paths.values()):
        return paths
    if directory.exists():
        shutil.rmtree(directory)
    for split, count in counts.items():
        qpi = recipe.questions_per_image if split == "train" else 1
        generate_split(directory, split, count, seed=recipe.data_seed, questions_per_image=qpi, **fields)
    atomic_write_text(stamp_file, json.dumps(stamp) + "\n")
    return paths


def machine_line() -> str:
    """``"<cpu> (<matrix ISA>), <n> cores"``: recorded beside every result."""
    from ..bench.timing import machine_description

    info = machine_description()
    return f"{info.get('cpu', 'unknown CPU')} ({info['cpu_matrix_isa']}), {os.cpu_count()} cores"


def scale_projector_to_text(model, pixel_values, image_grids=None) -> None:
    """Scale the projector's last layer so that image tokens start at the norm of the text embeddings.

    Trained from scratch, default initialisations give image tokens far larger norms than the LLM's std-0.02 text
    embeddings, and the LLM then learns slowly to read them (the official model never meets this: its projector is
    trained against a pretrained LLM). ``pixel_values`` (and ``image_grids``) are a few random inputs.
    """
    import torch

    with torch.no_grad():
        features = model.get_image_features(pixel_values, image_grids)
        scale = (model.get_input_embeddings().weight.norm(dim=-1).mean() / features.norm(dim=-1).mean()).item()
        last = model.image_encoder.projector[-1]
        last.weight.mul_(scale)
        last.bias.mul_(scale)


def set_stop_tokens(model, tokenizer) -> None:
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>")]
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id


def answer_split(model_dir_or_engine, split_json: Path, batch_size: int = 32) -> dict[str, Any]:
    """Greedy answers to every question of a split: accuracy, count and per-question correctness (a ``"0101..."``
    string in file order). Takes a model directory or a loaded :class:`~inf_llava.inference.InfLlavaEngine`."""
    from ..inference import InfLlavaEngine
    from .evaluate import load_questions, normalize, predict

    engine = model_dir_or_engine
    if not isinstance(engine, InfLlavaEngine):
        engine = InfLlavaEngine.from_pretrained(model_dir_or_engine, dtype="fp32", device="cpu")
    questions = load_questions(split_json)
    answers = predict(engine, questions, batch_size=batch_size)
    correct = "".join("1" if normalize(a) == normalize(q.answer) else "0" for q, a in zip(questions, answers))
    return {"accuracy": correct.count("1") / len(correct), "n": len(correct), "correct": correct}


def learning_curve(model_dir: Path, every: int = 50) -> list[list[float]]:
    """``[[step, loss], ...]`` from a run's ``metrics.jsonl``, averaged over windows of ``every`` steps."""
    from ..training.metrics import METRICS_FILE

    rows = [json.loads(line) for line in (model_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "loss" in r and "step" in r]
    curve, window = [], []
    for row in rows:
        window.append(row["loss"])
        if row["step"] % every == 0 or row is rows[-1]:
            curve.append([row["step"], sum(window) / len(window)])
            window = []
    return curve


def run_grid(
    jobs_todo: Iterable[tuple],
    worker: Callable[[tuple], dict[str, Any]],
    results: dict[str, Any],
    results_path: Path,
    *,
    jobs: int,
    progress: bool,
    desc: str,
    summary: Callable[[dict[str, Any]], str] | None = None,
) -> dict[str, Any]:
    """Run ``worker(job)`` for every job whose ``(arm, seed)`` (items 1 and 2 of the job) is not in
    ``results["runs"]``, ``jobs`` at a time in fresh spawned processes; each result (holding ``arm`` and ``seed``)
    is recorded and the file rewritten at once, so an interrupted grid resumes where it stopped."""
    import multiprocessing as mp

    from tqdm.auto import tqdm

    todo = [job for job in jobs_todo if run_key(job[1], job[2]) not in results["runs"]]
    bar = tqdm(total=len(todo), desc=desc, unit="run", disable=not progress)

    def record(result: dict[str, Any]) -> None:
        key = run_key(result["arm"], result["seed"])
        results["runs"][key] = result
        atomic_write_text(results_path, json.dumps(results, indent=1) + "\n")
        bar.update(1)
        line = summary(result) if summary else f"test {result['test']['accuracy']:.3f}"
        bar.write(f"{key}: {line} (train {result['train_seconds']:.0f} s)")

    if jobs <= 1:  # in this process
        for job in todo:
            record(worker(job))
    elif todo:
        context = mp.get_context("spawn")
        with context.Pool(processes=min(jobs, len(todo)), maxtasksperchild=1) as pool:
            for result in pool.imap_unordered(worker, todo):
                record(result)
    bar.close()
    return results


def train_image_side(recipe, model, processor, train_json: Path, labels_of, init_dir: Path, seed: int, **options):
    """Stage 1 of a grid run: ``model``'s image side trained on the attributes of ``train_json``'s scenes
    (``labels_of(record["scene"])`` -> class per slot; ``recipe``: ``pretrain_steps``, ``pretrain_batch_size``,
    ``pretrain_lr``, ``warmup_ratio``; ``options`` go to
    :func:`~inf_llava.synthetic.encoder_pretraining.pretrain_image_side`), then saved to ``init_dir`` with its loss
    curve (``pretrain_curve.json``); returns the curve."""
    import torch

    from ..images import load_image
    from ..training.assemble import save_model
    from .encoder_pretraining import preprocess_all, pretrain_image_side

    records = json.loads(train_json.read_text())
    images = [load_image(train_json.parent / r["image"]) for r in records]
    curve = pretrain_image_side(
        model,
        preprocess_all(processor, images),
        torch.tensor([labels_of(r["scene"]) for r in records]),
        steps=recipe.pretrain_steps,
        batch_size=recipe.pretrain_batch_size,
        lr=recipe.pretrain_lr,
        seed=seed,
        warmup_ratio=recipe.warmup_ratio,
        **options,
    )
    save_model(model, processor, init_dir, overwrite=True)
    atomic_write_text(init_dir / "pretrain_curve.json", json.dumps(curve) + "\n")
    return curve
