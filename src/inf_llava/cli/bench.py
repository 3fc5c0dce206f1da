"""Benchmarks that run both sides in one process and report ratios.

inf-llava bench encode [--dtype fp32|bf16] [--layers N] [--repeats R] [--compile]   one JSON line
inf-llava bench tokens                                                  INF-LLaVA vs LLaVA-NeXT tokens + prefill
inf-llava bench generate                                                decode vs HF Llava, batched throughput
inf-llava bench linear                                                  packed vs plain bf16 linears (CPU)
inf-llava bench all [--output docs]                                     all of them + docs/performance.md
inf-llava bench serve [--model DIR] [--levels 1:24,16:96,64:192]        inf-llava serve vs vllm serve (serving.md)

``--device cuda`` runs the same benchmarks on a GPU (``scripts/device-bench.sh`` is the prepared run for a lent
one); ``all`` times the encoder in fp32 and bf16 (eager, and bf16 under ``torch.compile`` with weight freezing) and
the LLM benchmarks in ``--dtype``.
"""

from __future__ import annotations

import argparse
import json

NAME = "bench"
HELP = "performance benchmarks (encoder, tokens/prefill, decoding, packed linears, serving against vLLM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("which", choices=["encode", "tokens", "generate", "linear", "all", "serve"])
    parser.add_argument(
        "--dtype", choices=["fp32", "bf16"], default="fp32", help="compute dtype (all: of tokens and generate)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--layers", type=int, default=24, help="encode: tower layers (24 in CLIP-L; fewer on CPU)")
    parser.add_argument(
        "--compile", action="store_true", help="encode: time ours under torch.compile with weight freezing"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported) after a warm-up")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--output", default="docs", help="all: directory for performance.md/json and the chart; serve: for serving.md"
    )
    serve = parser.add_argument_group("serve (run it where `vllm` is installed: make bench-serve)")
    serve.add_argument("--model", default=None, help="model directory (default: the shipped demo model)")
    serve.add_argument("--levels", default="1:24,16:96,64:192", help="concurrency:requests pairs (default %(default)s)")
    serve.add_argument("--rounds", type=int, default=2, help="rounds, servers in turns (default %(default)s)")
    serve.add_argument("--max-tokens", type=int, default=16, help="new tokens per request at most (default 16)")
    serve.add_argument("--serve-dtype", choices=["fp32", "bf16"], default="bf16", help="both servers' dtype")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..bench import encode, generate, linear, report, tokens
    from ..bench.timing import machine_description
    from ..runtime import resolve_device

    if args.which == "serve":
        from pathlib import Path

        from ..bench import serve

        results = serve.run(
            args.model,
            levels=serve.parse_levels(args.levels),
            rounds=args.rounds,
            max_tokens=args.max_tokens,
            dtype=args.serve_dtype,
        )
        print(serve.markdown_table(results["summary"]))
        print(f"wrote {serve.write_report(results, Path(args.output))}")
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.layers < 2:
        raise ValueError("--layers must be >= 2 (features come from layer -2)")
    device = str(resolve_device(args.device))
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {args.device}: no CUDA device is available here")
    common = dict(repeats=args.repeats, device=device)
    if args.which == "encode":
        print(json.dumps(encode.run(args.dtype, layers=args.layers, compile=args.compile, **common)))
    elif args.which == "tokens":
        print(json.dumps(tokens.run(dtype=args.dtype, **common)))
    elif args.which == "generate":
        print(json.dumps(generate.run(dtype=args.dtype, **common)))
    elif args.which == "linear":
        print(json.dumps(linear.run(**common)))
    else:
        command = f"inf-llava bench all --layers {args.layers} --device {args.device} --dtype {args.dtype}"
        results: dict = {"machine": machine_description(), "command": command, "encode": []}
        for dtype, compiled in (("fp32", False), ("bf16", False), ("bf16", True)):
            row = encode.run(dtype, layers=args.layers, compile=compiled, compare_fp32=not compiled, **common)
            print(json.dumps(row), flush=True)
            results["encode"].append(row)
        if not device.startswith("cuda"):
            results["linear"] = linear.run(**common)
            print(json.dumps(results["linear"]), flush=True)
        results["tokens"] = tokens.run(dtype=args.dtype, **common)
        print(json.dumps(results["tokens"]), flush=True)
        results["generate"] = generate.run(dtype=args.dtype, **common)
        print(json.dumps(results["generate"]), flush=True)
        path = report.write(results, args.output)
        print(f"wrote {path}")
    return 0
