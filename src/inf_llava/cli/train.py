"""Train INF-LLaVA on LLaVA-format data: stage 1 (pretrain: DEM + projector) or stage 2 (finetune: + the LLM).

  inf-llava train --config configs/pretrain.yaml --model base --data blip_laion_cc_sbu_558k.json \\
      --image-folder images --output stage1
  inf-llava train --config configs/finetune.yaml --model stage1 --data llava_v1_5_mix665k.json \\
      --image-folder images --output stage2

The same command runs on several GPUs or CPU processes under `torchrun --nproc-per-node N -m inf_llava train ...`
or `accelerate launch --config_file configs/accelerate/ddp.yaml -m inf_llava train ...`. Flags override the values
of --config. Resume an interrupted run with --resume-from latest (or a checkpoint directory).
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a model (pretrain / finetune stage) on LLaVA-format data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    flag = argparse.BooleanOptionalAction
    run = parser.add_argument_group("run")
    run.add_argument("--config", help="YAML file of settings (flags override it), e.g. configs/pretrain.yaml")
    run.add_argument("--stage", choices=["pretrain", "finetune"], help="pretrain: DEM + projector; finetune: + LLM")
    run.add_argument("--model", help="model directory (from `inf-llava init` or an earlier stage)")
    run.add_argument("--data", help="LLaVA-format .json or .jsonl file")
    run.add_argument("--image-folder", help="folder the records' image paths are relative to")
    run.add_argument("--output", help="output directory (model, metrics.jsonl, loss.png, checkpoints)")
    run.add_argument("--template", help="conversation template (default: plain for pretrain, the model's for finetune)")
    run.add_argument("--adapter", help="official mm_projector.bin (DEM + projector) to load before training")
    run.add_argument("--resume-from", help="checkpoint directory, or 'latest' for the newest one in --output")
    run.add_argument("--overwrite-output", action=flag, default=None, help="start over in a used --output")

    schedule = parser.add_argument_group("schedule")
    schedule.add_argument("--epochs", type=float, help="passes over the data (default 1)")
    schedule.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    schedule.add_argument("--batch-size", type=int, help="samples per process per micro-batch (default 4)")
    schedule.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step (default 1)")
    schedule.add_argument("--lr", type=float, help="peak learning rate (default: 1e-3 pretrain, 2e-5 finetune)")
    schedule.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 0)")
    schedule.add_argument("--warmup-ratio", type=float, help="share of steps of linear warmup (default 0.03)")
    schedule.add_argument("--lr-scheduler", choices=["cosine", "linear", "constant_with_warmup"], help="(cosine)")
    schedule.add_argument("--max-grad-norm", type=float, help="gradient clipping, 0 = off (default 1.0)")
    schedule.add_argument("--seed", type=int, help="seed of the data order and new weights (default 42)")
    schedule.add_argument("--save-steps", type=int, help="write a checkpoint every N steps")
    schedule.add_argument("--save-total-limit", type=int, help="keep only the newest N checkpoints")
    schedule.add_argument("--logging-steps", type=int, help="log every N steps (default 1)")

    model = parser.add_argument_group("model")
    model.add_argument("--bf16", action=flag, default=None, help="bf16 autocast (weights stay --model-dtype)")
    model.add_argument("--model-dtype", choices=["fp32", "bf16"], help="dtype the weights are trained in (fp32)")
    model.add_argument("--gradient-checkpointing", action=flag, default=None, help="recompute activations")
    model.add_argument("--unfreeze-vision-tower", action=flag, default=None, help="also train the vision tower")
    model.add_argument("--lora", action=flag, default=None, help="LoRA on the LLM (PEFT) instead of full tuning")
    model.add_argument("--lora-r", type=int, help="LoRA rank (default 128)")
    model.add_argument("--lora-alpha", type=int, help="LoRA alpha (default 256)")
    model.add_argument("--lora-dropout", type=float, help="LoRA dropout (default 0.05)")
    model.add_argument("--qlora", action=flag, default=None, help="LoRA on a 4-bit LLM (needs CUDA + bitsandbytes)")

    data = parser.add_argument_group("data")
    data.add_argument("--image-aspect-ratio", choices=["pad", "square"], help="pad to square / crop (by stage)")
    data.add_argument("--max-length", type=int, help="longest sample in tokens, image slots included (2048)")
    data.add_argument("--group-by-modality-length", action=flag, default=None, help="LLaVA's grouped sampler")
    data.add_argument("--skip-invalid", action=flag, default=None, help="skip (and list) invalid samples")
    data.add_argument("--verify-data", action=flag, default=None, help="decode and tokenise every sample first")
    data.add_argument("--max-image-pixels", type=int, help="refuse larger images (decompression bombs)")
    data.add_argument("--num-workers", type=int, help="data-loading worker processes (default 2)")
    data.add_argument("--progress", action=flag, default=None, help="show the progress bar (default on)")


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from ..training import TrainConfig, train

    # Every TrainConfig field has a flag of the same name; None means "not given" (the YAML or default applies).
    config = TrainConfig.from_sources(args.config, **{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    result = train(config)
    if result.skipped:
        print(f"{len(result.skipped)} sample(s) were skipped as invalid; see {result.output / 'skipped.jsonl'}")
    return 0
