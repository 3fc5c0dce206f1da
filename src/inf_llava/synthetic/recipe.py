"""The synthetic task's model, training recipe and the paper's ablation in miniature (``make ablation``).

The model is a small INF-LLaVA trained from scratch on CPU, vision tower included (no pretrained tower exists here):
a 4-layer ViT on 24-px views of 4-px patches (36 tokens per view; the 3x3 grid makes 72-px high-resolution images),
the DEM, and a 4-layer Llama, with a byte-level BPE tokenizer trained on the task's words and the ``llama3``
template. The ablation trains five variants with the same data, steps, batch and seeds (paper Table 6 plus the
LLaVA-1.5-style baseline):

- ``low_res``: the low-resolution view alone (one base view, LLaVA-1.5 style);
- ``local``: local tiles only (+ the low-resolution view);
- ``global``: strided views only (+ the low-resolution view);
- ``add``: both perspectives added element-wise, no DEM (+ the low-resolution view);
- ``inf_llava``: DCM + DEM (+ the low-resolution view), the full model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..configuration import InfLlavaConfig
from ..jsonl import atomic_write_text
from ..presets import build_tiny_tokenizer, processor_for, small_config
from .dataset import generate
from .tasks import vocabulary_corpus

VARIANTS: dict[str, dict[str, Any]] = {
    "low_res": {"perspectives": "none"},
    "local": {"perspectives": "local"},
    "global": {"perspectives": "global"},
    "add": {"perspectives": "both", "perspective_fusion": "add"},
    "inf_llava": {},
}
LABELS = {
    "low_res": "low-res baseline (one base view)",
    "local": "local crops only",
    "global": "global (strided) crops only",
    "add": "both crops, element-wise add (no DEM)",
    "inf_llava": "DCM + DEM (INF-LLaVA)",
}


@dataclass(frozen=True)
class Recipe:
    """Everything that defines a run except the variant and the seed."""

    view_size: int = 24
    patch_size: int = 4
    grid: int = 3
    vision_width: int = 96
    vision_layers: int = 4
    vision_heads: int = 4
    lm_width: int = 192
    lm_layers: int = 4
    lm_heads: int = 4
    train_images: int = 6000
    validation_images: int = 300
    test_images: int = 300
    questions_per_image: int = 6
    describe: bool = False  # add the full scene description as a training turn (dense supervision)
    match_embedding_scale: bool = True  # start image tokens at the scale of the LM's text embeddings
    feature_norm: bool = True  # config.vision_feature_norm: one scale for the low-res view and the DEM output
    data_seed: int = 0
    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    template: str = "llama3"

    @property
    def image_size(self) -> int:
        return self.grid * self.view_size


def build_tokenizer():
    """The tiny Llama-3-style BPE tokenizer, with the task's words in its training corpus."""
    return build_tiny_tokenizer(vocab_size=512, extra_corpus=vocabulary_corpus())


def model_config(recipe: Recipe, tokenizer, variant: str = "inf_llava") -> InfLlavaConfig:
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    return sized_config(
        recipe, tokenizer, grid=recipe.grid, vision_feature_norm=recipe.feature_norm, **VARIANTS[variant]
    )


def sized_config(recipe, tokenizer, **fields) -> InfLlavaConfig:
    """:func:`~inf_llava.presets.small_config` at a synthetic recipe's sizes (``view_size``, ``patch_size``,
    ``vision_*``, ``lm_*``: MLP widths 4x and 8/3x, as many KV heads as heads), plus ``fields``."""
    return small_config(
        tokenizer,
        view_size=recipe.view_size,
        patch_size=recipe.patch_size,
        vision_width=recipe.vision_width,
        vision_intermediate=4 * recipe.vision_width,
        vision_layers=recipe.vision_layers,
        vision_heads=recipe.vision_heads,
        lm_width=recipe.lm_width,
        lm_intermediate=int(8 / 3 * recipe.lm_width) // 8 * 8,
        lm_layers=recipe.lm_layers,
        lm_heads=recipe.lm_heads,
        lm_kv_heads=recipe.lm_heads,
        max_positions=1024,
        **fields,
    )


def build_model(recipe: Recipe, variant: str, seed: int):
    """A freshly initialised (seeded) model and its processor."""
    from ..modeling.inf_llava import InfLlavaForConditionalGeneration

    tokenizer = build_tokenizer()
    config = model_config(recipe, tokenizer, variant)
    torch.manual_seed(seed)
    model = InfLlavaForConditionalGeneration(config)
    if recipe.match_embedding_scale:
        _match_embedding_scale(model, recipe)
    stops = [tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>")]
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor_for(config, tokenizer, template=recipe.template)


@torch.no_grad()
def _match_embedding_scale(model, recipe: Recipe) -> None:
    """Scale the projector's last layer so that image tokens start with the norm of text-token embeddings.

    Trained from scratch, the default initialisations give image tokens ~60x the norm of the text embeddings
    (PyTorch's default init for the projector vs the LM's std-0.02 embeddings); the LM then struggles to learn to
    read them. The official model never meets this: its projector is trained against a pretrained LM in stage 1.
    """
    torch.manual_seed(0)
    pixels = torch.randn(4, 3, recipe.image_size, recipe.image_size)
    image_norm = model.get_image_features(pixels).norm(dim=-1).mean()
    text_norm = model.get_input_embeddings().weight.norm(dim=-1).mean()
    last = model.image_encoder.projector[-1]
    scale = (text_norm / image_norm).item()
    last.weight.mul_(scale)
    last.bias.mul_(scale)


def prepare_data(recipe: Recipe, directory: Path) -> dict[str, Path]:
    """Generate the splits once per recipe (reused when ``directory`` already holds the same data settings)."""
    stamp = {
        "seed": recipe.data_seed,
        "image_size": recipe.image_size,
        "grid": recipe.grid,
        "train": recipe.train_images,
        "validation": recipe.validation_images,
        "test": recipe.test_images,
        "questions_per_image": recipe.questions_per_image,
        "describe": recipe.describe,
    }
    stamp_file = directory / "data.json"
    paths = {split: directory / f"{split}.json" for split in ("train", "validation", "test")}
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp and all(p.exists() for p in paths.values()):
        return paths
    if directory.exists():
        shutil.rmtree(directory)
    paths = generate(
        directory,
        train=recipe.train_images,
        validation=recipe.validation_images,
        test=recipe.test_images,
        seed=recipe.data_seed,
        image_size=recipe.image_size,
        grid=recipe.grid,
        questions_per_image=recipe.questions_per_image,
        describe=recipe.describe,
    )
    atomic_write_text(stamp_file, json.dumps(stamp) + "\n")
    return paths


def train_run(
    recipe: Recipe, variant: str, seed: int, data: dict[str, Path], run_dir: Path, progress: bool = True
) -> Path:
    """Initialise and train one (variant, seed); returns the trained model directory (resumes if interrupted)."""
    from ..training import train
    from ..training.assemble import save_model

    init_dir, out_dir = run_dir / "init", run_dir / "model"
    if (out_dir / "config.json").exists() and (out_dir / "train_config.yaml").exists():
        return out_dir
    if not (init_dir / "config.json").exists():
        model, processor = build_model(recipe, variant, seed)
        save_model(model, processor, init_dir, overwrite=True)
    train(finetune_config(recipe, seed, data["train"], init_dir, out_dir, progress, unfreeze_vision_tower=True))
    return out_dir


def finetune_config(
    recipe, seed: int, train_json: Path, init_dir: Path, out_dir: Path, progress: bool, *, unfreeze_vision_tower: bool
):
    """The :class:`~inf_llava.training.TrainConfig` of a synthetic run's question stage (``recipe`` needs
    ``template``, ``steps``, ``batch_size``, ``lr``, ``warmup_ratio``): checkpoints four times, resumes if
    ``out_dir`` exists."""
    from ..training import TrainConfig

    return TrainConfig(
        stage="finetune",
        model=str(init_dir),
        data=str(train_json),
        image_folder=str(train_json.parent),
        output=str(out_dir),
        template=recipe.template,
        max_steps=recipe.steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        warmup_ratio=recipe.warmup_ratio,
        seed=seed,
        unfreeze_vision_tower=unfreeze_vision_tower,
        save_steps=max(1, recipe.steps // 4),
        save_total_limit=1,
        resume_from="latest" if out_dir.exists() else None,
        logging_steps=10,
        num_workers=0,
        progress=progress,
    )


def evaluate_run(model_dir: Path, split_json: Path, batch_size: int = 32, progress: bool = False) -> dict:
    from ..inference import InfLlavaEngine
    from .evaluate import evaluate

    engine = InfLlavaEngine.from_pretrained(model_dir, dtype="fp32", device="cpu")
    return evaluate(engine, split_json, batch_size=batch_size, progress=progress)


def run_ablation(
    recipe: Recipe, work_dir: str | Path, variants=tuple(VARIANTS), seeds=(0, 1, 2), progress: bool = True
) -> dict:
    """Train and evaluate every (variant, seed); results accumulate in ``work_dir/results.json`` (rerunning skips
    finished runs)."""
    work_dir = Path(work_dir)
    data = prepare_data(recipe, work_dir / "data")
    results_file = work_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if results.get("recipe") != asdict(recipe):
        results = {"recipe": asdict(recipe), "runs": {}}
    for variant in variants:
        for seed in seeds:
            key = f"{variant}/seed{seed}"
            if key in results["runs"]:
                continue
            if progress:
                print(f"== {key}: training {recipe.steps} steps", flush=True)
            model_dir = train_run(recipe, variant, seed, data, work_dir / variant / f"seed{seed}", progress)
            results["runs"][key] = {
                "variant": variant,
                "seed": seed,
                "model": str(model_dir),
                "validation": evaluate_run(model_dir, data["validation"]),
                "test": evaluate_run(model_dir, data["test"]),
            }
            atomic_write_text(results_file, json.dumps(results, indent=1) + "\n")
            if progress:
                test = results["runs"][key]["test"]
                kinds = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in test["per_kind"].items())
                print(f"   test accuracy {test['accuracy']:.3f} ({kinds})", flush=True)
    return results


def with_overrides(recipe: Recipe, **overrides: Any) -> Recipe:
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
