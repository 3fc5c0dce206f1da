"""Fixed 3x3 vs dynamic DCM grids on the wide-and-tall synthetic task (``make aspect``, issue 17 item 2).

Two arms that differ only in ``grid``: ``fixed`` (the official 3x3) and ``dynamic`` (``grid="dynamic"``,
``max_views=9``: the same budget of sub-images and the same visual-token count). Same data, steps, batch, learning rate
and seeds; seed ``s`` of both arms starts from the same weights (the DEM's parameters do not depend on the grid). Each
run trains in two stages (:mod:`inf_llava.synthetic.encoder_pretraining`: the image side on the scene attributes,
then DEM + projector + LLM on the questions with the tower frozen), then answers every test question greedily;
results keep the per-question 0/1 vector, so the report pairs the two arms by seed and question
(:mod:`inf_llava.eval.significance`).

Results accumulate in a committed JSON file (``docs/dynamic-grids.json`` by default): rerunning skips the finished
(arm, seed) runs, across sessions too (the work directory with data and checkpoints can be deleted at any time).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .grid import answer_split, learning_curve, load_results, machine_line, run_grid

ARMS: dict[str, dict[str, Any]] = {
    "fixed": {"grid": 3},
    "dynamic": {"grid": "dynamic", "max_views": 9},
}
LABELS = {"fixed": "fixed 3x3 (official)", "dynamic": "dynamic grid (max_views=9)"}


@dataclass(frozen=True)
class AspectRecipe:
    view_size: int = 24
    patch_size: int = 4
    vision_width: int = 64
    vision_layers: int = 3
    vision_heads: int = 4
    lm_width: int = 128
    lm_layers: int = 3
    lm_heads: int = 4
    train_images: int = 3000
    validation_images: int = 300
    test_images: int = 1800
    questions_per_image: int = 4
    data_seed: int = 0
    pretrain_steps: int = 500  # stage 1: image side on the scene attributes (encoder_pretraining)
    pretrain_batch_size: int = 32
    pretrain_lr: float = 2e-3
    steps: int = 500  # stage 2: DEM + projector + LLM on the questions, tower frozen
    batch_size: int = 16
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    template: str = "llama3"


def model_config(recipe: AspectRecipe, tokenizer, arm: str):
    from .recipe import sized_config

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return sized_config(recipe, tokenizer, vision_feature_norm=True, **ARMS[arm])


def build_model(recipe: AspectRecipe, arm: str, seed: int):
    """A seeded model of ``arm`` and its processor; both arms get the same initial weights for the same seed."""
    import torch

    from ..modeling.cropping import local_crops
    from ..modeling.inf_llava import InfLlavaForConditionalGeneration
    from ..presets import processor_for
    from .grid import scale_projector_to_text, set_stop_tokens
    from .recipe import build_tokenizer

    tokenizer = build_tokenizer()
    config = model_config(recipe, tokenizer, arm)
    torch.manual_seed(seed)
    model = InfLlavaForConditionalGeneration(config)
    # Start image tokens at the norm of the text embeddings, measured on the same random 3x3 canvases in both arms
    # (a dynamic model given a 3x3 grid computes what the fixed model computes).
    side = 3 * recipe.view_size
    canvases = torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(0))
    if config.geometry.is_dynamic:
        tiles = torch.stack([local_crops(c, (3, 3)) for c in canvases])
        scale_projector_to_text(model, tiles, torch.tensor([[3, 3]] * 4))
    else:
        scale_projector_to_text(model, canvases)
    set_stop_tokens(model, tokenizer)
    return model, processor_for(config, tokenizer, template=recipe.template)


def prepare_data(recipe: AspectRecipe, directory: Path) -> dict[str, Path]:
    """The three splits, generated once per data setting (reused when ``directory`` holds the same)."""
    from .aspect import generate_split
    from .grid import prepare_splits

    return prepare_splits(recipe, directory, "aspect-v1", generate_split)


def pretrain_run(recipe: AspectRecipe, arm: str, seed: int, data: dict[str, Path], init_dir: Path) -> list:
    """Stage 1: a seeded model whose image side is trained on the scene attributes, saved to ``init_dir``;
    returns its loss curve (also saved there as ``pretrain_curve.json``)."""
    from .encoder_pretraining import scene_labels
    from .grid import train_image_side

    curve_file = init_dir / "pretrain_curve.json"
    if (init_dir / "config.json").exists() and curve_file.exists():
        return json.loads(curve_file.read_text())
    model, processor = build_model(recipe, arm, seed)
    return train_image_side(recipe, model, processor, data["train"], scene_labels, init_dir, seed)


def train_run(recipe: AspectRecipe, arm: str, seed: int, data: dict[str, Path], run_dir: Path, progress: bool):
    """Both stages of one (arm, seed); returns (model dir, stage-1 curve). Resumes an interrupted stage 2."""
    from ..training import train
    from .recipe import finetune_config

    init_dir, out_dir = run_dir / "init", run_dir / "model"
    pretrain_curve = pretrain_run(recipe, arm, seed, data, init_dir)
    if (out_dir / "config.json").exists() and (out_dir / "train_config.yaml").exists():
        return out_dir, pretrain_curve
    train(finetune_config(recipe, seed, data["train"], init_dir, out_dir, progress, unfreeze_vision_tower=False))
    return out_dir, pretrain_curve


def run_one(recipe: AspectRecipe, arm: str, seed: int, work_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Train and evaluate one (arm, seed) (resumes an interrupted training run)."""
    data = prepare_data(recipe, work_dir / "data")
    start = time.perf_counter()
    model_dir, pretrain_curve = train_run(recipe, arm, seed, data, work_dir / arm / f"seed{seed}", progress)
    trained = time.perf_counter()
    result = {
        "arm": arm,
        "seed": seed,
        "validation": answer_split(model_dir, data["validation"]),
        "test": answer_split(model_dir, data["test"]),
        "pretrain_curve": pretrain_curve,
        "curve": learning_curve(model_dir),
        "train_seconds": round(trained - start, 1),
        "eval_seconds": round(time.perf_counter() - trained, 1),
    }
    return result


def _worker(job: tuple[dict, str, int, str]) -> dict[str, Any]:
    recipe_dict, arm, seed, work_dir = job
    import torch

    torch.set_num_threads(int(os.environ.get("INF_LLAVA_ASPECT_THREADS", "1")))
    return run_one(AspectRecipe(**recipe_dict), arm, seed, Path(work_dir))


def run_experiment(
    recipe: AspectRecipe,
    work_dir: str | Path,
    results_path: str | Path,
    arms=tuple(ARMS),
    seeds=(0, 1, 2, 3, 4),
    jobs: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Every (arm, seed) not yet in ``results_path``, ``jobs`` at a time (one thread each); the file is rewritten
    after each finished run, so an interrupted experiment resumes where it stopped."""
    work_dir, results_path = Path(work_dir), Path(results_path)
    results = load_results(results_path, recipe)
    data = prepare_data(recipe, work_dir / "data")  # once, before the workers start
    if "test_questions" not in results:
        records = json.loads(data["test"].read_text())
        results["test_questions"] = [
            {"id": r["id"], "kind": r["kind"], "orientation": r["orientation"]} for r in records
        ]
    results.setdefault("machine", machine_line())
    todo = [(asdict(recipe), arm, seed, str(work_dir)) for seed in seeds for arm in arms]
    worker = _worker if jobs > 1 else lambda job: run_one(recipe, job[1], job[2], work_dir)
    return run_grid(todo, worker, results, results_path, jobs=jobs, progress=progress, desc="aspect runs")


def with_overrides(recipe: AspectRecipe, **overrides: Any) -> AspectRecipe:
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
