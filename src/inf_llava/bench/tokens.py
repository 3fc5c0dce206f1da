"""``bench tokens``: visual tokens and LLM prefill time, INF-LLaVA vs HF LLaVA-NeXT (AnyRes) on the same LLM.

INF-LLaVA always gives the LLM one view's worth of tokens (576 with CLIP-L/14-336) while AnyRes grows with the image;
prefill is timed as the language model's forward over the spliced ``inputs_embeds`` (same weights on both sides),
and the whole forward (tower + LLM) is timed as well.
"""

from __future__ import annotations

from functools import partial

import torch
from PIL import Image

from .models import BenchSizes, build_models, captured_inputs_embeds
from .timing import median_seconds

IMAGE_SIZES = ((336, 336), (480, 640), (672, 672), (768, 1024), (1008, 1008), (1080, 1920))  # (height, width)
PROMPT = "USER: <image>\nDescribe the image in detail. ASSISTANT:"


def _lm_prefill(model, embeds: torch.Tensor) -> None:
    out = model.model.language_model(inputs_embeds=embeds, use_cache=False)
    model.lm_head(out.last_hidden_state[:, -1:])


def run(sizes: BenchSizes | None = None, image_sizes=IMAGE_SIZES, repeats: int = 3) -> dict:
    sizes = sizes or BenchSizes()
    _, ours, ours_proc, nxt, next_proc, _, _ = build_models(sizes)
    rows = []
    for height, width in image_sizes:
        image = Image.new("RGB", (width, height), (90, 140, 200))
        ours_inputs = ours_proc(images=[image], text=PROMPT, return_tensors="pt")
        next_inputs = next_proc(images=[image], text=PROMPT, return_tensors="pt")
        ours_embeds = captured_inputs_embeds(ours, ours_inputs)
        next_embeds = captured_inputs_embeds(nxt, next_inputs)
        with torch.inference_mode():
            ours_prefill = median_seconds(partial(_lm_prefill, ours, ours_embeds), repeats)
            next_prefill = median_seconds(partial(_lm_prefill, nxt, next_embeds), repeats)
            ours_full = median_seconds(partial(ours, **ours_inputs, logits_to_keep=1), repeats)
            next_full = median_seconds(partial(nxt, **next_inputs, logits_to_keep=1), repeats)
        ours_tokens = int((ours_inputs["input_ids"] == ours.config.image_token_id).sum())
        next_tokens = int((next_inputs["input_ids"] == nxt.config.image_token_id).sum())
        rows.append(
            {
                "image": f"{height}x{width}",
                "ours_visual_tokens": ours_tokens,
                "next_visual_tokens": next_tokens,
                "ours_seq": int(ours_embeds.shape[1]),
                "next_seq": int(next_embeds.shape[1]),
                "ours_prefill_s": round(ours_prefill, 4),
                "next_prefill_s": round(next_prefill, 4),
                "prefill_speedup": round(next_prefill / ours_prefill, 2),
                "ours_forward_s": round(ours_full, 4),
                "next_forward_s": round(next_full, 4),
            }
        )
    return {"bench": "tokens", "llm": sizes.__dict__, "rows": rows, "threads": torch.get_num_threads()}
