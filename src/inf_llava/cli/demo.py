"""INF-LLaVA's main job, offline: answer questions that need high-resolution detail and global context.

Loads the shipped demo model (trained by `make ablation` on the synthetic high-resolution task), answers questions
about a few bundled example images (question, answer, truth), draws what the model sees (local tiles, strided
views, the low-resolution view and a DEM attention map) into a PNG, evaluates the bundled held-out test split and
ends with `demo accuracy: <fraction> on <N> held-out questions`.
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "run the shipped demo model on bundled examples and its held-out test split (offline)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="model directory (default: the shipped demo model)")
    parser.add_argument("--assets", default=None, help="folder with examples/ and demo-test/ (default: the package's)")
    parser.add_argument("--figure", default="runs/demo/inf-llava-demo.png", help="where to write the PNG")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N test questions")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import torch

    from ..assets import ASSETS_DIR, resolve_model_path
    from ..images import load_image
    from ..inference import GenerationSettings, InfLlavaEngine
    from ..synthetic.evaluate import evaluate, normalize
    from ..synthetic.ship import DEMO_TEST, EXAMPLES
    from ..synthetic.visualize import figure

    start = time.perf_counter()
    assets = Path(args.assets) if args.assets else ASSETS_DIR
    model_dir = resolve_model_path(args.model)
    engine = InfLlavaEngine.from_pretrained(model_dir, dtype="fp32", device="cpu")
    print(
        f"model: {model_dir} ({sum(p.numel() for p in engine.model.parameters()) / 1e6:.1f}M parameters; "
        f"{engine.model.config.geometry.describe()})"
    )

    examples_dir = assets / EXAMPLES
    records = json.loads((examples_dir / "examples.json").read_text())
    settings = GenerationSettings(max_new_tokens=8)
    print("\nExamples (glyph questions are unanswerable from the low-resolution view by construction):")
    for record in records:
        image = load_image(examples_dir / record["image"])
        turns = record["conversations"]
        print(f"  {record['image']}")
        for question, truth in zip(turns[0::2], turns[1::2]):
            text = question["value"].replace("<image>", "").strip()
            answer = engine.answer(image, text, settings)
            mark = "ok" if normalize(answer) == normalize(truth["value"]) else "WRONG"
            print(f"    Q: {text}\n    A: {answer!r}   truth: {truth['value']!r}   [{mark}]")

    figure_path = figure(
        engine.model,
        engine.processor,
        load_image(examples_dir / records[0]["image"]),
        args.figure,
        title="what INF-LLaVA sees: DCM views, the low-resolution view and DEM attention",
    )
    print(f"\nwrote {figure_path}")

    torch.set_grad_enabled(False)
    metrics = evaluate(
        engine,
        assets / DEMO_TEST / "test.json",
        limit=args.limit,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    for kind, row in metrics["per_kind"].items():
        print(f"  {kind.replace('_', ' '):>18}: {row['accuracy']:.3f} on {row['n']}")
    print(f"({time.perf_counter() - start:.0f}s)")
    print(f"demo accuracy: {metrics['accuracy']:.3f} on {metrics['n']} held-out questions")
    return 0
