"""Import or export the official stage-1 adapter, ``mm_projector.bin`` (projector + DEM, bf16, 24 tensors).

``import`` loads an official adapter (a file, a directory holding one such as the released INF-LLaVA-pretrain, or a
hub id) into a model and saves the result: the starting point of stage 2. ``export`` writes a model's projector and
DEM in the official layout, loadable by the official training code's ``--pretrain_mm_mlp_adapter``.
"""

from __future__ import annotations

import argparse

NAME = "adapter"
HELP = "import/export the official stage-1 adapter (mm_projector.bin)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    load = sub.add_parser("import", help="load mm_projector.bin into a model and save it")
    load.add_argument("model", help="model directory or hub id (converted, or an original llava_llama checkpoint)")
    load.add_argument("adapter", help="mm_projector.bin, a directory holding it, or a hub id")
    load.add_argument("output", help="directory for the model with the adapter loaded")
    load.add_argument("--overwrite", action="store_true", help="write into a non-empty output directory")
    save = sub.add_parser("export", help="write a model's projector and DEM as mm_projector.bin")
    save.add_argument("model", help="model directory or hub id")
    save.add_argument("output", help="the .bin file to write")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from ..conversion.adapter import load_official_adapter, resolve_adapter_file, save_official_adapter
    from ..errors import ModelLoadError
    from ..modeling.inf_llava import InfLlavaForConditionalGeneration

    if args.action == "export":
        model = InfLlavaForConditionalGeneration.from_pretrained(args.model, dtype="auto")
        path = save_official_adapter(model, args.output, dtype=torch.bfloat16)
        print(f"wrote {path} (projector + DEM, bf16)")
        return 0

    from ..processing.processor import InfLlavaProcessor

    output = Path(args.output)
    if output.exists() and any(output.iterdir()) and not args.overwrite:
        raise ModelLoadError(f"{output}: already exists and is not empty (pass --overwrite)")
    adapter = resolve_adapter_file(args.adapter)
    model = InfLlavaForConditionalGeneration.from_pretrained(args.model, dtype="auto")
    load_official_adapter(model, adapter)
    processor = InfLlavaProcessor.from_pretrained(args.model)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    print(f"loaded {adapter} into {args.model}; wrote {output}")
    return 0
