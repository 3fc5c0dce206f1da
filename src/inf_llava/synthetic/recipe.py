"""What the synthetic experiments' models share (``make aspect``, ``make ablation``): the tokenizer trained on the
base task's words, the model sizing of a recipe, and the question stage's training config.

A recipe is a frozen dataclass with the model sizes (``view_size``, ``patch_size``, ``vision_*``, ``lm_*``) and the
question stage's settings (``template``, ``steps``, ``batch_size``, ``lr``, ``warmup_ratio``); see
:class:`~inf_llava.synthetic.aspect_experiment.AspectRecipe` and
:class:`~inf_llava.synthetic.v2.experiment.AblationRecipe`.
"""

from __future__ import annotations

from pathlib import Path

from ..configuration import InfLlavaConfig
from ..presets import build_tiny_tokenizer, small_config
from .tasks import vocabulary_corpus


def build_tokenizer():
    """The tiny Llama-3-style BPE tokenizer, with the base task's words in its training corpus."""
    return build_tiny_tokenizer(vocab_size=512, extra_corpus=vocabulary_corpus())


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
