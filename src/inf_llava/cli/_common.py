"""Arguments shared by the commands that load a model (ask, chat, predict, serve, eval, ...)."""

from __future__ import annotations

import argparse


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", default=None, help="model directory or hub id (default: the shipped demo model)")
    group.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="weights dtype; auto = bf16 on GPUs and CPUs with AVX512-BF16/AMX, else fp32",
    )
    group.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.add_argument("--template", default=None, help="conversation template (default: the processor's)")
    group.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="spread the model over several devices with accelerate: auto, balanced or sequential",
    )
    quant = group.add_mutually_exclusive_group()
    quant.add_argument(
        "--load-in-4bit",
        dest="quantization",
        action="store_const",
        const="4bit",
        help="quantize the language model to 4 bits with bitsandbytes (CUDA); vision tower, DEM, projector stay 16-bit",
    )
    quant.add_argument(
        "--load-in-8bit", dest="quantization", action="store_const", const="8bit", help="as --load-in-4bit, 8 bits"
    )
    group.set_defaults(quantization=None)
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the image encoder with frozen weights (slower start, faster steady state)",
    )
    group.add_argument(
        "--pack-lm-weights",
        action="store_true",
        help="bf16 on CPU: the language model multiplies by weights packed once for oneDNN (same tokens, faster "
        "decoding, one extra copy of the LM weights in memory)",
    )


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    from ..images import DEFAULT_MAX_PIXELS

    parser.add_argument(
        "--max-image-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images with more pixels than this, before decoding them (default {DEFAULT_MAX_PIXELS})",
    )


def add_generation_arguments(parser: argparse.ArgumentParser, max_new_tokens: int = 512) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int, default=max_new_tokens, metavar="N")
    group.add_argument("--temperature", type=float, default=0.0, help="0 = greedy decoding (default)")
    group.add_argument("--top-p", type=float, default=1.0)
    group.add_argument("--seed", type=int, default=None, help="seed for sampled decoding")


def generation_settings(args: argparse.Namespace):
    from ..inference import GenerationSettings

    return GenerationSettings(
        max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, seed=args.seed
    )


def engine_from_args(args: argparse.Namespace):
    from ..assets import resolve_model_path
    from ..inference import InfLlavaEngine

    return InfLlavaEngine.from_pretrained(
        resolve_model_path(args.model),
        dtype=args.dtype,
        device=args.device,
        template=args.template,
        device_map=getattr(args, "device_map", None),
        quantization=getattr(args, "quantization", None),
        compile=getattr(args, "compile", False),
        pack_lm_weights=getattr(args, "pack_lm_weights", False),
    )
