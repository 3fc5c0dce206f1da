"""Convert a released INF-LLaVA checkpoint (WeihuangLin/INF-LLaVA-sft, INF_star-LLaVA-sft, a ``llava_llama``
directory) into a self-contained directory that ``InfLlavaForConditionalGeneration.from_pretrained`` and
``InfLlavaProcessor.from_pretrained`` load with no other input.

Every key is mapped explicitly (anything unknown, missing or mis-shaped stops the conversion before data is written);
the summary lists what went where and what was dropped on purpose. The CLIP tower comes from ``mm_vision_tower`` (or
--vision-tower) as in the official loader when that is available locally, else from the checkpoint's embedded copy.
"""

from __future__ import annotations

import argparse

NAME = "convert-official"
HELP = "convert a released INF-LLaVA (llava_llama) checkpoint to this package's format"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="original checkpoint: local directory or hub id")
    parser.add_argument("destination", metavar="DST", help="output directory (must not exist or be empty)")
    parser.add_argument(
        "--vision-tower",
        default=None,
        metavar="NAME_OR_PATH",
        help="CLIP tower (directory or hub id) instead of config.json's mm_vision_tower, for its config and weights "
        "(see --vision-weights)",
    )
    parser.add_argument(
        "--vision-weights",
        choices=["auto", "checkpoint", "tower"],
        default="auto",
        help="auto: the tower repository's own weights (what the official loader uses) when available without a "
        "download, else the embedded copy; checkpoint: the embedded copy; tower: the repository, downloaded if needed",
    )
    parser.add_argument(
        "--dtype",
        choices=["keep", "bf16", "fp16", "fp32"],
        default="keep",
        help="stored dtype of the output (keep: each tensor's source dtype)",
    )
    parser.add_argument(
        "--processor-mode",
        choices=["high_res", "base"],
        default="high_res",
        help="high_res: official training-path preprocessing (pad, resize to grid x view size); base: the "
        "official inference scripts' view-size processing with the in-model bicubic upsample",
    )
    parser.add_argument("--max-shard-size", default="5GB", help="output shard size (default 5GB)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty DST")
    parser.add_argument("--revision", default=None, help="hub revision of SRC")


def run(args: argparse.Namespace) -> int:
    from ..conversion.convert import plan_conversion
    from ..runtime import resolve_dtype

    plan = plan_conversion(
        args.source,
        vision_tower=args.vision_tower,
        vision_weights=args.vision_weights,
        processor_mode=args.processor_mode,
        **({"revision": args.revision} if args.revision else {}),
    )
    for line in plan.summary():
        print(line)
    dtype = None if args.dtype == "keep" else resolve_dtype(args.dtype)
    plan.save(
        args.destination,
        dtype=dtype,
        max_shard_size=args.max_shard_size,
        overwrite=args.overwrite,
        log=print,
    )
    return 0
