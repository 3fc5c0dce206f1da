"""Run INF-LLaVA end to end offline.

Until the trained demo model ships, this builds the untrained ``tiny`` preset (random weights, so its answers are
noise) and shows every stage working: preprocessing, the DCM views, one batched tower call, the DEM, token
splicing, KV-cached generation and a save/load round trip.
"""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "run the model end to end on bundled inputs (offline)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the tiny preset's weights")
    parser.add_argument("--max-new-tokens", type=int, default=12)


def run(args: argparse.Namespace) -> int:
    import tempfile
    import time

    import torch
    from PIL import Image, ImageDraw

    from ..inference import GenerationSettings, InfLlavaEngine
    from ..modeling.inf_llava import InfLlavaForConditionalGeneration
    from ..presets import build_tiny
    from ..processing.processor import InfLlavaProcessor

    print("note: no trained demo model is shipped yet; running the untrained 'tiny' preset (answers are noise)")
    model, processor = build_tiny(seed=args.seed)
    cfg = model.config
    geo = cfg.geometry
    print(
        f"geometry: grid {geo.grid_h}x{geo.grid_w}, view {geo.view_size}px, patch {geo.patch_size}px, "
        f"high-res {geo.high_res_size[0]}x{geo.high_res_size[1]}, {geo.tokens_per_image} image tokens"
    )

    image = Image.new("RGB", (160, 100), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 60, 60), fill="red")
    draw.rectangle((100, 40, 150, 90), fill="blue")
    engine = InfLlavaEngine(model, processor)
    question = "What color is the circle?"
    inputs = engine.inputs([engine.question(question)], [[image]])
    views = model.image_encoder.views(inputs["pixel_values"])
    print(
        f"pixel_values {tuple(inputs['pixel_values'].shape)} -> views {tuple(views.shape)} "
        f"(local {geo.num_crops} + global {geo.num_crops}); prompt {inputs['input_ids'].shape[1]} tokens"
    )
    with torch.inference_mode():
        feats = model.get_image_features(inputs["pixel_values"])
    print(f"image features {tuple(feats.shape)} (tokens_per_image x LM width)")

    start = time.perf_counter()
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    answer = engine.answer(image, question, settings)
    print(f"Q: {question}\nA: {answer!r}  ({time.perf_counter() - start:.2f}s)")

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        reloaded = InfLlavaEngine(
            InfLlavaForConditionalGeneration.from_pretrained(tmp), InfLlavaProcessor.from_pretrained(tmp)
        )
        same = reloaded.answer(image, question, settings) == answer
    print(f"save/load round trip gives the same answer: {same}")
    return 0 if same else 1
