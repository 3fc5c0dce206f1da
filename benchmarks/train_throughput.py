"""Training throughput (samples/s) and peak memory of the real training loop, fp32 vs bf16 autocast, in one run.

Each setting trains in its own process (so peak memory is that setting's own) on the same generated LLaVA-format
dataset, ``--repeats`` times, interleaved; throughput (the median, with the range over runs) counts the optimizer
steps after ``--warmup``. Peak memory is the process's peak resident set size on CPU above what the Python + torch
runtime held before training started (model, data, activations, optimizer state), or
``torch.cuda.max_memory_allocated`` on a GPU.

    .venv/bin/python benchmarks/train_throughput.py                    # tiny preset, finetune stage
    .venv/bin/python benchmarks/train_throughput.py --model DIR --stage pretrain --batch-size 8 --steps 30
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "fp32": dict(bf16=False, gradient_checkpointing=False),
    "bf16": dict(bf16=True, gradient_checkpointing=False),
    "fp32+ckpt": dict(bf16=False, gradient_checkpointing=True),
    "bf16+ckpt": dict(bf16=True, gradient_checkpointing=True),
}


def worker(args: argparse.Namespace) -> None:
    """Train once with one setting and print a JSON line of measurements."""
    import torch

    from inf_llava.training import TrainConfig, train

    torch.set_num_threads(args.threads)
    baseline = _current_rss()  # the Python + torch runtime, before the model and data exist
    config = TrainConfig(
        stage=args.stage,
        model=args.model,
        data=args.data,
        image_folder=str(Path(args.data).parent / "images"),
        output=args.output,
        batch_size=args.batch_size,
        max_steps=args.steps,
        lr=1e-4,
        num_workers=0,
        progress=False,
        seed=0,
        **SETTINGS[args.worker],
    )
    train(config)
    rows = [json.loads(line) for line in (Path(args.output) / "metrics.jsonl").read_text().splitlines()]
    timed = rows[args.warmup :]
    seconds = sum(row["samples"] / row["samples_per_s"] for row in timed)
    if torch.cuda.is_available():
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - baseline
    print(json.dumps({"samples_per_s": sum(r["samples"] for r in timed) / seconds, "peak_bytes": peak}))


def _current_rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: the tiny preset, built here)")
    parser.add_argument("--stage", default="finetune", choices=["pretrain", "finetune"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--samples", type=int, default=64, help="size of the generated dataset")
    parser.add_argument("--threads", type=int, default=torch_threads())
    parser.add_argument("--settings", default="fp32,bf16,fp32+ckpt,bf16+ckpt")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (median reported)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return 0

    from inf_llava.data.toy import make_toy_dataset
    from inf_llava.presets import build_tiny

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.model is None:
            model, processor = build_tiny(seed=0)
            model.save_pretrained(tmp / "model")
            processor.save_pretrained(tmp / "model")
            args.model = str(tmp / "model")
        kind = "caption" if args.stage == "pretrain" else "instruct"
        data = make_toy_dataset(tmp / "data", args.samples, kind=kind, text_only_every=0)
        names = args.settings.split(",")
        runs: dict[str, list[dict]] = {name: [] for name in names}
        # Settings are interleaved round by round, so a noisy neighbour on a shared machine hits them alike.
        for round_index in range(args.repeats):
            for name in names:
                output = tmp / f"{name}-{round_index}"
                command = [sys.executable, __file__, "--worker", name, "--model", args.model, "--data", str(data)]
                command += ["--output", str(output), "--stage", args.stage, "--steps", str(args.steps)]
                command += ["--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]
                command += ["--threads", str(args.threads)]
                env = {**os.environ, "HF_HUB_OFFLINE": "1"}
                done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
                if done.returncode:
                    print(done.stderr[-2000:], file=sys.stderr)
                    return 1
                runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    results = {
        name: {
            "samples_per_s": statistics.median(r["samples_per_s"] for r in rows),
            "peak_bytes": max(r["peak_bytes"] for r in rows),
            "range": (min(r["samples_per_s"] for r in rows), max(r["samples_per_s"] for r in rows)),
        }
        for name, rows in runs.items()
    }
    base = results.get("fp32")
    print(
        f"{args.stage}, batch {args.batch_size}, {args.steps} steps ({args.warmup} warm-up), {args.threads} thread(s), "
        f"median of {args.repeats} interleaved runs"
    )
    print(f"{'setting':<11} {'samples/s':>10} {'(range)':>13} {'vs fp32':>8} {'peak MiB':>9} {'vs fp32':>8}")
    for name, row in results.items():
        speed = f"{row['samples_per_s'] / base['samples_per_s']:.2f}x" if base else "-"
        memory = f"{row['peak_bytes'] / base['peak_bytes']:.2f}x" if base else "-"
        spread = f"{row['range'][0]:.1f}-{row['range'][1]:.1f}"
        mib = row["peak_bytes"] / 2**20
        print(f"{name:<11} {row['samples_per_s']:>10.1f} {spread:>13} {speed:>8} {mib:>9.0f} {memory:>8}")
    return 0


def torch_threads() -> int:
    return max(1, min(4, os.cpu_count() or 1))


if __name__ == "__main__":
    sys.exit(main())
