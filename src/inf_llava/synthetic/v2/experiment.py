"""The ablation grid (``make ablation``, issue 14): every variant of :mod:`.variants` x several seeds on task v2.

Variants differ only in their DCM/DEM config overrides; data, model sizes, steps, batch, learning rates, stopping rule
and seeds are the same for all. Seed ``s`` of every variant starts from the same tower, LLM and projector weights
(the variants' parameters differ only in the DEM, whose initialisation does not depend on the variant's options).

0. Once per seed, a vision tower is pretrained on the task's images with a dense per-patch objective
   (:mod:`.tower`) and shared, frozen, by every variant: the stand-in for the pretrained CLIP tower of the paper.

Each run then trains in the paper's two stages on top of it:

1. DEM + projector on the scene's attributes (:func:`~inf_llava.synthetic.encoder_pretraining.pretrain_image_side`
   with the tower frozen: per quadrant, which shape and which glyph; the paper aligns them on captions);
2. DEM + projector + LLM on the questions, tower frozen, with validation-based stopping: every ``eval_every`` steps
   the model answers the validation split; training stops after ``patience`` evaluations without improvement and
   the run keeps its best-validated checkpoint.

The kept model then answers every test question greedily; results keep the per-question 0/1 vector so the report
pairs variants by seed and question (:mod:`inf_llava.eval.significance`). Results accumulate in a committed JSON
file (``docs/ablation.json``): rerunning skips finished runs, across sessions too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ...jsonl import atomic_write_text
from ..grid import answer_split, learning_curve, load_results, machine_line, run_grid, run_key
from .variants import VARIANTS, variant_overrides


@dataclass(frozen=True)
class AblationRecipe:
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
    test_images: int = 3000
    questions_per_image: int = 5
    data_seed: int = 0
    tower_steps: int = 1000  # stage 0, once per seed
    tower_batch_size: int = 16
    tower_lr: float = 5e-3
    pretrain_steps: int = 300  # stage 1
    pretrain_batch_size: int = 32
    pretrain_lr: float = 2e-3
    steps: int = 1000  # stage 2 at most
    batch_size: int = 16
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    eval_every: int = 200
    patience: int = 2
    template: str = "llama3"
    answers_in_vocabulary: bool = True  # the tokenizer learns every answer as it is written: one token per word
    tower_positions: bool = True  # the tower also learns where each patch is (tower.py)

    @property
    def grid(self) -> int:
        return 3


def build_tokenizer(recipe: AblationRecipe):
    from ...presets import build_tiny_tokenizer
    from .task import vocabulary_corpus

    return build_tiny_tokenizer(vocab_size=512, extra_corpus=vocabulary_corpus(recipe.answers_in_vocabulary))


def model_config(recipe: AblationRecipe, tokenizer, variant: str):
    from ..recipe import sized_config

    return sized_config(recipe, tokenizer, grid=recipe.grid, vision_feature_norm=True, **variant_overrides(variant))


def build_model(recipe: AblationRecipe, variant: str, seed: int):
    """A seeded model of ``variant`` and its processor."""
    import torch

    from ...modeling.inf_llava import InfLlavaForConditionalGeneration
    from ...presets import processor_for
    from ..grid import scale_projector_to_text, set_stop_tokens

    tokenizer = build_tokenizer(recipe)
    config = model_config(recipe, tokenizer, variant)
    torch.manual_seed(seed)
    model = InfLlavaForConditionalGeneration(config)
    if variant != "inf_llava":  # every weight outside the high-resolution branch as INF-LLaVA's of this seed
        torch.manual_seed(seed)
        reference = InfLlavaForConditionalGeneration(model_config(recipe, tokenizer, "inf_llava")).state_dict()
        own = model.state_dict()
        model.load_state_dict({k: reference[k] if k in reference else v for k, v in own.items()})
    side = config.geometry.high_res_size[0]
    scale_projector_to_text(model, torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(0)))
    set_stop_tokens(model, tokenizer)
    return model, processor_for(config, tokenizer, template=recipe.template)


def prepare_data(recipe: AblationRecipe, directory: Path) -> dict[str, Path]:
    """The three splits, generated once per data setting (reused when ``directory`` holds the same)."""
    from ..grid import prepare_splits
    from .task import generate_split

    return prepare_splits(recipe, directory, "task-v2", generate_split, size=recipe.grid * recipe.view_size)


def scene_labels(scene: dict) -> list[int]:
    """Per quadrant: the shape (``none`` or colour + kind) and the glyph (``none`` or its type)."""
    from .task import SLOTS, glyph_class, shape_class

    shapes = {s["quadrant"]: s for s in scene["shapes"]}
    glyphs = {g["quadrant"]: g for g in scene["glyphs"]}
    return [shape_class(shapes.get(q)) if slot == "shape" else glyph_class(glyphs.get(q)) for q, slot in SLOTS]


def _canvases_and_targets(processor, split_json: Path, patch: int, limit: int | None = None):
    import numpy as np
    import torch

    from ...images import load_image
    from ..encoder_pretraining import preprocess_all
    from .tower import patch_targets

    records = json.loads(split_json.read_text())[:limit]
    images = [load_image(split_json.parent / r["image"]) for r in records]
    canvases = preprocess_all(processor, images)["pixel_values"]
    per_image = [patch_targets(np.array(im), r["scene"], 3, patch) for im, r in zip(images, records)]
    return canvases, {key: torch.stack([t[key] for t in per_image]) for key in per_image[0]}


def recipe_dir(work_dir: Path, recipe: AblationRecipe) -> Path:
    """Where the towers and runs of ``recipe`` live: one folder per recipe, so no run resumes another recipe's."""
    import hashlib

    digest = hashlib.sha256(json.dumps(asdict(recipe), sort_keys=True).encode()).hexdigest()[:10]
    return work_dir / f"recipe-{digest}"


def tower_dir(work_dir: Path, recipe: AblationRecipe, seed: int) -> Path:
    return recipe_dir(work_dir, recipe) / "towers" / f"seed{seed}"


def tower_run(recipe: AblationRecipe, seed: int, work_dir: Path) -> list:
    """Stage 0 of ``seed``: the shared tower, pretrained on the per-patch targets and saved as
    ``towers/seed{seed}/tower.safetensors``; returns its curve ``[[step, loss, held-out glyph accuracy], ...]``."""
    from safetensors.torch import save_file

    from .tower import pretrain_tower

    directory = tower_dir(work_dir, recipe, seed)
    curve_file = directory / "curve.json"
    if curve_file.exists() and (directory / "tower.safetensors").exists():
        return json.loads(curve_file.read_text())
    data = prepare_data(recipe, work_dir / "data")
    model, processor = build_model(recipe, "inf_llava", seed)
    canvases, targets = _canvases_and_targets(processor, data["train"], recipe.patch_size)
    held_out = _canvases_and_targets(processor, data["validation"], recipe.patch_size)
    tower = model.model.image_encoder.vision_tower
    curve = pretrain_tower(
        tower,
        canvases,
        targets,
        grid=recipe.grid,
        tokens_per_view=model.config.geometry.tokens_per_view,
        steps=recipe.tower_steps,
        batch_size=recipe.tower_batch_size,
        lr=recipe.tower_lr,
        seed=seed,
        held_out=held_out,
        warmup_ratio=recipe.warmup_ratio,
        positions=recipe.tower_positions,
    )
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tower.state_dict().items()}, str(directory / "tower.safetensors"))
    atomic_write_text(curve_file, json.dumps(curve) + "\n")
    return curve


def pretrain_run(recipe: AblationRecipe, variant: str, seed: int, data: dict[str, Path], run_dir: Path) -> list:
    """Stage 1: the seed's shared tower loaded and frozen, DEM + projector trained on the scene attributes; saved to
    ``run_dir/init``; returns the loss curve."""
    from safetensors.torch import load_file

    from ..grid import train_image_side
    from .task import slot_sizes

    init_dir = run_dir / "init"
    curve_file = init_dir / "pretrain_curve.json"
    if (init_dir / "config.json").exists() and curve_file.exists():
        return json.loads(curve_file.read_text())
    model, processor = build_model(recipe, variant, seed)
    tower_file = run_dir.parent.parent / "towers" / f"seed{seed}" / "tower.safetensors"
    model.model.image_encoder.vision_tower.load_state_dict(load_file(str(tower_file)))
    return train_image_side(
        recipe, model, processor, data["train"], scene_labels, init_dir, seed, sizes=slot_sizes(), train_tower=False
    )


def _trained_weights(out_dir: Path, step: int, completed: bool) -> dict:
    """The stage-2 trainable weights at ``step``, under the model's own names."""
    from safetensors.torch import load_file

    from ...training.checkpoint import checkpoint_path, model_file

    if completed:
        return {}  # the finished run's directory holds the whole model
    state = load_file(str(checkpoint_path(out_dir, step) / model_file(0)))
    return {name.removeprefix("model."): tensor for name, tensor in state.items()}


def _engine(init_dir: Path, out_dir: Path, step: int, completed: bool):
    from ...inference import InfLlavaEngine

    if completed:
        return InfLlavaEngine.from_pretrained(out_dir, dtype="fp32", device="cpu")
    engine = InfLlavaEngine.from_pretrained(init_dir, dtype="fp32", device="cpu")
    state = _trained_weights(out_dir, step, completed)
    known = engine.model.state_dict()
    unknown = [name for name in state if name not in known]
    if unknown:
        raise RuntimeError(f"{out_dir}: checkpoint weights the model lacks, e.g. {unknown[0]!r}")
    engine.model.load_state_dict(state, strict=False)
    return engine


def finetune_with_validation(recipe: AblationRecipe, seed: int, data: dict[str, Path], run_dir: Path, progress: bool):
    """Stage 2 in slices of ``eval_every`` steps, validating after each; stops after ``patience`` evaluations
    without improvement; saves the best-validated model to ``run_dir/model``. Returns the validation history
    ``[[step, accuracy], ...]`` and the best step. Resumes from the history file."""
    from ...training import train
    from ..recipe import finetune_config

    init_dir, out_dir, best_dir = run_dir / "init", run_dir / "stage2", run_dir / "model"
    history_file = run_dir / "validation_history.json"
    state = json.loads(history_file.read_text()) if history_file.exists() else {"history": [], "done": False}
    if state["done"] and (best_dir / "config.json").exists():
        return state["history"], state["best_step"]
    config = finetune_config(recipe, seed, data["train"], init_dir, out_dir, progress, unfreeze_vision_tower=False)
    config = replace(config, save_steps=recipe.steps, save_total_limit=2)  # slices end with a checkpoint
    step = state["history"][-1][0] if state["history"] else 0
    best = max(state["history"], key=lambda row: row[1], default=[0, -1.0])
    while step < recipe.steps:
        step = min(recipe.steps, step + recipe.eval_every)
        result = train(replace(config, resume_from="latest" if out_dir.exists() else None), stop_after=step)
        engine = _engine(init_dir, out_dir, step, result.completed)
        accuracy = answer_split(engine, data["validation"])["accuracy"]
        state["history"].append([step, accuracy])
        if accuracy > best[1]:
            best = [step, accuracy]
            _save_model(engine, best_dir)
        state["best_step"] = best[0]
        atomic_write_text(history_file, json.dumps(state) + "\n")
        if step - best[0] >= recipe.patience * recipe.eval_every:
            break
    state["done"] = True
    atomic_write_text(history_file, json.dumps(state) + "\n")
    return state["history"], state["best_step"]


def _save_model(engine, directory: Path) -> None:
    from ...training.assemble import save_model

    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(engine.model, engine.processor, tmp)
    if directory.exists():
        shutil.rmtree(directory)
    tmp.rename(directory)


def run_one(recipe: AblationRecipe, variant: str, seed: int, work_dir: Path, progress: bool = False) -> dict[str, Any]:
    """Both stages of one (variant, seed), then its test answers (resumes an interrupted run)."""
    data = prepare_data(recipe, work_dir / "data")
    run_dir = recipe_dir(work_dir, recipe) / variant / f"seed{seed}"
    start = time.perf_counter()
    tower_curve = tower_run(recipe, seed, work_dir)
    pretrain_curve = pretrain_run(recipe, variant, seed, data, run_dir)
    history, best_step = finetune_with_validation(recipe, seed, data, run_dir, progress)
    trained = time.perf_counter()
    model_dir = run_dir / "model"
    return {
        "arm": variant,
        "seed": seed,
        "best_step": best_step,
        "validation_history": history,
        "validation": answer_split(model_dir, data["validation"]),
        "test": answer_split(model_dir, data["test"]),
        "tower_curve": tower_curve,
        "pretrain_curve": pretrain_curve,
        "curve": learning_curve(run_dir / "stage2"),
        "train_seconds": round(trained - start, 1),
        "eval_seconds": round(time.perf_counter() - trained, 1),
        "model_dir": str(model_dir),
    }


def _worker(job: tuple[dict, str, int, str]) -> dict[str, Any]:
    recipe_dict, variant, seed, work_dir = job
    import torch

    torch.set_num_threads(int(os.environ.get("INF_LLAVA_ABLATION_THREADS", "1")))
    return run_one(AblationRecipe(**recipe_dict), variant, seed, Path(work_dir))


def _tower_worker(job: tuple[dict, int, str]) -> int:
    recipe_dict, seed, work_dir = job
    import torch

    torch.set_num_threads(int(os.environ.get("INF_LLAVA_ABLATION_THREADS", "1")))
    tower_run(AblationRecipe(**recipe_dict), seed, Path(work_dir))
    return seed


def _summary(result: dict[str, Any]) -> str:
    return f"test {result['test']['accuracy']:.3f}, best step {result['best_step']}"


def run_experiment(
    recipe: AblationRecipe,
    work_dir: str | Path,
    results_path: str | Path,
    variants=tuple(VARIANTS),
    seeds=(0, 1, 2, 3, 4),
    jobs: int = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Every (variant, seed) not yet in ``results_path``, ``jobs`` at a time (one thread each), seed-major so
    that an interrupted grid has whole seeds of every variant."""
    work_dir, results_path = Path(work_dir), Path(results_path)
    results = load_results(results_path, recipe)
    data = prepare_data(recipe, work_dir / "data")  # once, before the workers start
    if "test_questions" not in results:
        records = json.loads(data["test"].read_text())
        results["test_questions"] = [{"id": r["id"], "kind": r["kind"]} for r in records]
    results.setdefault("machine", machine_line())
    todo = [(asdict(recipe), variant, seed, str(work_dir)) for seed in seeds for variant in variants]
    towers = sorted({seed for _, variant, seed, _ in todo if run_key(variant, seed) not in results["runs"]})
    towers = [s for s in towers if not (tower_dir(work_dir, recipe, s) / "curve.json").exists()]
    if towers:  # stage 0 first, so that no two runs of a seed train its tower at once
        if progress:
            print(f"pretraining the shared tower of seed(s) {towers}", flush=True)
        jobs_todo = [(asdict(recipe), s, str(work_dir)) for s in towers]
        if jobs <= 1 or len(towers) == 1:
            for job in jobs_todo:
                _tower_worker(job)
        else:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(processes=min(jobs, len(towers)), maxtasksperchild=1) as pool:
                list(pool.imap_unordered(_tower_worker, jobs_todo))
    worker = _worker if jobs > 1 else lambda job: run_one(recipe, job[1], job[2], work_dir)
    return run_grid(
        todo, worker, results, results_path, jobs=jobs, progress=progress, desc="ablation runs", summary=_summary
    )


def with_overrides(recipe: AblationRecipe, **overrides: Any) -> AblationRecipe:
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
