"""Assemble a fresh INF-LLaVA to start training from.

From pretrained backbones (local directories, or hub ids when online): the vision tower and the LLM keep their
weights, the DEM and projector are newly initialised from --seed. Or from a preset built locally:

  inf-llava init --vision-tower TOWER --llm meta-llama/Meta-Llama-3-8B-Instruct --output base
  inf-llava init --preset tiny --output tiny-base

TOWER is a Hugging Face vision model (folder or hub id); the released model's is ``configuration.CLIP_L14_336_REPO``.
"""

from __future__ import annotations

import argparse

NAME = "init"
HELP = "assemble a new model from a vision backbone and an LLM (or a preset) for training"


def _grid(text: str) -> int | tuple[int, int] | str:
    if text.lower() == "dynamic":
        return "dynamic"
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must be N, HxW or 'dynamic', got {text!r}") from None
    if len(values) == 1:
        return values[0]
    if len(values) == 2:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(f"grid must be N, HxW or 'dynamic', got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vision-tower", help="vision backbone: directory or hub id (CLIP, SigLIP, ...)")
    source.add_argument("--preset", choices=["tiny"], help="build a preset locally instead (no download)")
    parser.add_argument("--llm", help="causal LM backbone: directory or hub id (with --vision-tower)")
    parser.add_argument("--output", required=True, help="directory to write the model and processor to")
    parser.add_argument(
        "--grid", type=_grid, default=3, help="DCM grid: N, HxW or 'dynamic' (a grid per image; default 3)"
    )
    parser.add_argument(
        "--max-views", type=int, default=None, help="with --grid dynamic: sub-images per perspective at most (9)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the new DEM / projector weights")
    parser.add_argument("--template", help="chat template (default: guessed from the tokenizer)")
    parser.add_argument("--image-token", help="token whose id fills image slots (default: a reserved one)")
    parser.add_argument("--vision-feature-layer", type=int, default=-2, help="tower layer to take (default -2)")
    parser.add_argument("--projector-type", default="mlp2x_gelu", help="linear or mlpNx_gelu (default mlp2x_gelu)")
    parser.add_argument("--dem-num-heads", type=int, default=8, help="DEM attention heads (default 8)")
    parser.add_argument("--mode", choices=["high_res", "base"], default="high_res", help="preprocessing path")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="saved weight dtype")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty --output")


def run(args: argparse.Namespace) -> int:
    from ..training.assemble import assemble, assemble_preset, save_model

    dynamic = {} if args.max_views is None else {"max_views": args.max_views}
    if dynamic and args.grid != "dynamic":
        raise ValueError("--max-views applies only with --grid dynamic")
    if args.preset:
        model, processor = assemble_preset(args.preset, seed=args.seed, grid=args.grid, **dynamic)
        summary = f"preset {args.preset!r} (seed {args.seed})"
    else:
        if not args.llm:
            raise ValueError("--vision-tower needs --llm")
        model, processor, report = assemble(
            args.vision_tower,
            args.llm,
            grid=args.grid,
            seed=args.seed,
            template=args.template,
            image_token=args.image_token,
            dtype=args.dtype,
            mode=args.mode,
            vision_feature_layer=args.vision_feature_layer,
            projector_type=args.projector_type,
            dem_num_heads=args.dem_num_heads,
            **dynamic,
        )
        summary = report.summary()
    save_model(model, processor, args.output, overwrite=args.overwrite)
    print(summary)
    print(
        f"saved to {args.output}: {model.config.geometry.describe()}, "
        f"{sum(p.numel() for p in model.parameters()):,} parameters"
    )
    return 0
