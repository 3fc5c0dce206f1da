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


def engine_from_args(args: argparse.Namespace):
    from ..assets import resolve_model_path
    from ..inference import InfLlavaEngine

    return InfLlavaEngine.from_pretrained(
        resolve_model_path(args.model), dtype=args.dtype, device=args.device, template=args.template
    )
