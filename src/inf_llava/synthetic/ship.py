"""Ship the best INF-LLaVA run of the ablation as the package's demo model, with its model card, the held-out test
split it was scored on and a few example images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..assets import ASSETS_DIR
from ..jsonl import atomic_write_text
from .dataset import generate_split
from .report import summarize
from .tasks import KINDS

MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "train_config.yaml",
)
DEMO_MODEL, DEMO_TEST, EXAMPLES = "demo-model", "demo-test", "examples"


def best_run(results: dict[str, Any], variant: str = "inf_llava") -> dict[str, Any]:
    """The run of ``variant`` with the best validation accuracy (ties: lower seed)."""
    runs = [r for r in results["runs"].values() if r["variant"] == variant]
    if not runs:
        raise ValueError(f"no finished {variant} run to ship")
    return max(runs, key=lambda r: (r["validation"]["accuracy"], -r["seed"]))


def _copy_split(split_json: Path, destination: Path) -> None:
    records = json.loads(split_json.read_text())
    (destination / "images").mkdir(parents=True, exist_ok=True)
    for record in records:
        shutil.copy2(split_json.parent / record["image"], destination / record["image"])
    atomic_write_text(destination / split_json.name, json.dumps(records, indent=1) + "\n")


def model_card(run: dict[str, Any], results: dict[str, Any]) -> str:
    recipe = results["recipe"]
    test = run["test"]
    high = recipe["grid"] * recipe["view_size"]
    table = summarize(results)
    rows = "\n".join(
        f"| {kind.replace('_', ' ')} | {test['per_kind'][kind]['accuracy']:.3f} | {test['per_kind'][kind]['n']} |"
        for kind in KINDS
    )
    baseline = table.get("low_res", {})
    baseline_line = (
        f"The low-resolution baseline trained the same way reaches {baseline['detail'][0]:.3f} on detail questions "
        f"(mean of {baseline['detail'][2]} seeds) against this model's {test['per_kind']['detail']['accuracy']:.3f}."
        if baseline
        else ""
    )
    return f"""# inf-llava demo model (synthetic high-resolution VQA)

A small INF-LLaVA (DCM + DEM) trained from scratch on CPU, vision tower included, on this package's synthetic
high-resolution VQA task (`inf-llava synth`). It exists so that `make demo` and every command's default model run
offline; it knows nothing but the synthetic scenes (shapes, boxes filled with a fine coloured mesh).

- Architecture: CLIP-style ViT, {recipe["vision_layers"]} layers x {recipe["vision_width"]} wide,
  {recipe["view_size"]}-px views of {recipe["patch_size"]}-px patches; {recipe["grid"]}x{recipe["grid"]} DCM grid
  ({high}-px high-resolution input); tower features LayerNorm-ed (`vision_feature_norm`); DEM; `mlp2x_gelu`
  projector;
  Llama {recipe["lm_layers"]} layers x {recipe["lm_width"]}; a byte-level BPE tokenizer with Llama-3 special tokens;
  `{recipe["template"]}` template.
- Training: `inf-llava train --stage finetune --unfreeze-vision-tower`, {recipe["steps"]} steps of batch
  {recipe["batch_size"]}, AdamW lr {recipe["lr"]} cosine (warmup {recipe["warmup_ratio"]}), seed {run["seed"]}, on
  {recipe["train_images"]} generated images (data seed {recipe["data_seed"]}) with up to
  {recipe["questions_per_image"]} questions each. Chosen as the best of the seeds of the ablation by validation
  accuracy ({run["validation"]["accuracy"]:.3f}); reproduce with `make ablation`.
- Test accuracy (exact match, {test["n"]} held-out questions, bundled in `../demo-test/`): **{test["accuracy"]:.3f}**.

| question kind | accuracy | questions |
|---|---|---|
{rows}

{baseline_line}

Detail questions are unanswerable from the low-resolution view by construction (the box contents are drawn only on
pixels that view never samples); see `docs/ablation.md` for all variants.
"""


def ship(results: dict[str, Any], work_dir: str | Path, assets_dir: str | Path = ASSETS_DIR) -> Path:
    """Copy the best INF-LLaVA run into ``assets_dir/demo-model`` with a model card; bundle the test split and
    example images. Returns the model directory."""
    work_dir, assets_dir = Path(work_dir), Path(assets_dir)
    run = best_run(results)
    source = Path(run["model"])
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
    _copy_split(work_dir / "data" / "test.json", assets_dir / DEMO_TEST)
    recipe = results["recipe"]
    generate_split(
        assets_dir / EXAMPLES,
        "examples",
        3,
        seed=recipe["data_seed"],
        image_size=recipe["grid"] * recipe["view_size"],
        grid=recipe["grid"],
        questions_per_image=recipe["questions_per_image"],
    )
    return target
