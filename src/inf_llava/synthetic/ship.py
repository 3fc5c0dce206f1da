"""Ship the best-validated INF-LLaVA run of the ablation (task v2) as the package's demo model, with a model card
that compares it like with like, a held-out slice of the test split it was scored on, and a few example images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..assets import ASSETS_DIR
from ..jsonl import atomic_write_text

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "processor_config.json",
)
DEMO_MODEL, DEMO_TEST, EXAMPLES = "demo-model", "demo-test", "examples"
DEMO_QUESTIONS = 500  # the first questions of the test split (kinds cycle, so they stay balanced)
BASELINES = ("low_res", "dcm_add", "dcm_global", "dcm_local")


def best_run(results: dict[str, Any], variant: str = "inf_llava") -> dict[str, Any]:
    """The run of ``variant`` with the best validation accuracy (ties: lower seed)."""
    runs = [r for r in results["runs"].values() if r["arm"] == variant]
    if not runs:
        raise ValueError(f"no finished {variant} run to ship")
    return max(runs, key=lambda r: (r["validation"]["accuracy"], -r["seed"]))


def _copy_split(split_json: Path, destination: Path, limit: int | None = None) -> None:
    records = json.loads(split_json.read_text())[:limit]
    (destination / "images").mkdir(parents=True, exist_ok=True)
    for record in records:
        shutil.copy2(split_json.parent / record["image"], destination / record["image"])
    atomic_write_text(destination / split_json.name, json.dumps(records, indent=1) + "\n")


def _cell(correct: np.ndarray) -> str:
    from ..eval.significance import bootstrap_accuracy

    interval = bootstrap_accuracy(correct, samples=2000)
    return f"{interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]"


def model_card(run: dict[str, Any], results: dict[str, Any]) -> str:
    """The card: architecture, recipe, and this model's test accuracy per kind beside the runs of the same seed of
    the baselines (same split, same recipe), with 95% bootstrap intervals over questions."""
    from .v2.report import correctness, slices

    recipe = results["recipe"]
    seed = run["seed"]
    masks = slices(results)
    columns = [("this model (INF-LLaVA)", "inf_llava")]
    columns += [(f"`{v}`", v) for v in BASELINES if seed in correctness(results, v)]
    header = "| questions | " + " | ".join(label for label, _ in columns) + " |"
    rows = [header, "|---|" + "---|" * len(columns)]
    for name, mask in masks.items():
        cells = [_cell(correctness(results, v)[seed][mask][None]) for _, v in columns]
        rows.append(f"| {name.replace('_', ' ')} | " + " | ".join(cells) + " |")
    n = len(results["test_questions"])
    return f"""# inf-llava demo model (synthetic high-resolution VQA, task v2)

A small INF-LLaVA (DCM + DEM, the official code's choices) trained on CPU on this package's synthetic task v2: large
shapes and 3x3-pixel glyphs whose type no single view of the model but the high-resolution ones can show
(`docs/ablation.md`). It exists so that `make demo` and every command's default model run offline; it knows nothing
but these scenes.

- Architecture: CLIP-style ViT, {recipe["vision_layers"]} layers x {recipe["vision_width"]} wide,
  {recipe["view_size"]}-px views of {recipe["patch_size"]}-px patches; 3x3 DCM grid; tower features LayerNorm-ed
  (`vision_feature_norm`); DEM; `mlp2x_gelu` projector; Llama {recipe["lm_layers"]} layers x {recipe["lm_width"]};
  a byte-level BPE tokenizer with Llama-3 special tokens; `{recipe["template"]}` template.
- Training (`make ablation`, seed {seed}): the vision tower pretrained on the task's images with per-patch targets
  ({recipe["tower_steps"]} steps), then DEM + projector on the scene attributes ({recipe["pretrain_steps"]} steps),
  then DEM + projector + LLM on the questions, tower frozen (up to {recipe["steps"]} steps of batch
  {recipe["batch_size"]}, lr {recipe["lr"]}), keeping the best-validated checkpoint (step {run["best_step"]}).
  {recipe["train_images"]} training images, data seed {recipe["data_seed"]}. Chosen among the INF-LLaVA seeds by
  validation accuracy ({run["validation"]["accuracy"]:.3f}).

Test accuracy on the {n} held-out questions of the ablation's test split (exact match; the first {DEMO_QUESTIONS}
are bundled in `../demo-test/`), beside the baselines' runs of the same seed on the same split, trained the same
way (95% bootstrap intervals over questions):

{chr(10).join(rows)}

All seeds of every variant, with seed-aware intervals and paired tests: `docs/ablation.md`.
"""


def ship(results: dict[str, Any], work_dir: str | Path, assets_dir: str | Path = ASSETS_DIR) -> Path:
    """Copy the best-validated INF-LLaVA run into ``assets_dir/demo-model`` with its model card; bundle the first
    test questions and example images. Returns the model directory."""
    from .v2.experiment import AblationRecipe, prepare_data
    from .v2.task import generate_split

    work_dir, assets_dir = Path(work_dir), Path(assets_dir)
    run = best_run(results)
    source = Path(run["model_dir"])
    target = assets_dir / DEMO_MODEL
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in MODEL_FILES:
        if (source / name).exists():
            shutil.copy2(source / name, target / name)
    atomic_write_text(target / "README.md", model_card(run, results))
    for name in (DEMO_TEST, EXAMPLES):
        if (assets_dir / name).exists():
            shutil.rmtree(assets_dir / name)
    recipe = AblationRecipe(**results["recipe"])
    data = prepare_data(recipe, work_dir / "data")
    _copy_split(data["test"], assets_dir / DEMO_TEST, limit=DEMO_QUESTIONS)
    generate_split(assets_dir / EXAMPLES, "examples", 3, seed=recipe.data_seed, questions_per_image=5)
    return target
