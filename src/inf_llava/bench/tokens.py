"""``bench tokens``: visual tokens and LLM prefill time, INF-LLaVA vs HF LLaVA-NeXT (AnyRes) on the same LLM.

INF-LLaVA always gives the LLM one view's worth of tokens (``geometry.tokens_per_view``) while AnyRes grows with the
image; prefill is timed as the language model's forward over the spliced ``inputs_embeds`` (same weights on both
sides), and the whole forward (tower + LLM) is timed as well.

Each row also shows the dynamic-grid INF-LLaVA (``grid="dynamic"``, the official budget of 9 sub-images; same
weights): the grid it picks for the image, its token count (the same), the tower views it encodes, the share of the
image's pixels each geometry keeps and of its canvas that is image rather than padding
(:func:`~inf_llava.geometry.grid_fit`), and its forward time.
"""

from __future__ import annotations

from functools import partial

import torch
from PIL import Image

from ..configuration import OFFICIAL_GEOMETRY
from ..geometry import grid_fit
from ..runtime import DTYPES
from .models import BenchSizes, build_models, captured_inputs_embeds, dynamic_variant
from .timing import interleaved_median_seconds

# (height, width): the base view, common photo sizes, and the high-resolution input itself
IMAGE_SIZES = (
    OFFICIAL_GEOMETRY.base_size,
    (480, 640),
    (672, 672),
    (768, 1024),
    OFFICIAL_GEOMETRY.high_res_size,
    (1080, 1920),
)
PROMPT = "USER: <image>\nDescribe the image in detail. ASSISTANT:"


def _lm_prefill(model, embeds: torch.Tensor) -> None:
    out = model.model.language_model(inputs_embeds=embeds, use_cache=False)
    model.lm_head(out.last_hidden_state[:, -1:])


def run(
    sizes: BenchSizes | None = None, image_sizes=IMAGE_SIZES, repeats: int = 3, device: str = "cpu", dtype: str = "fp32"
) -> dict:
    sizes = sizes or BenchSizes()
    tokenizer, ours, ours_proc, nxt, next_proc, _, _ = build_models(sizes, device=device, dtype=DTYPES[dtype])
    dyn, dyn_proc = dynamic_variant(ours, tokenizer)
    fixed_geometry, view = ours.config.geometry, ours.config.geometry.view_size
    rows = []
    for height, width in image_sizes:
        image = Image.new("RGB", (width, height), (90, 140, 200))
        ours_inputs = ours_proc(images=[image], text=PROMPT, return_tensors="pt").to(device)
        next_inputs = next_proc(images=[image], text=PROMPT, return_tensors="pt").to(device)
        dyn_inputs = dyn_proc(images=[image], text=PROMPT, return_tensors="pt").to(device)
        grid = tuple(dyn_inputs["image_grids"][0].tolist())
        ours_embeds = captured_inputs_embeds(ours, ours_inputs)
        next_embeds = captured_inputs_embeds(nxt, next_inputs)
        with torch.inference_mode():
            seconds = interleaved_median_seconds(
                {
                    "ours_prefill": partial(_lm_prefill, ours, ours_embeds),
                    "next_prefill": partial(_lm_prefill, nxt, next_embeds),
                    "ours_full": partial(ours, **ours_inputs, logits_to_keep=1),
                    "next_full": partial(nxt, **next_inputs, logits_to_keep=1),
                    "dynamic_full": partial(dyn, **dyn_inputs, logits_to_keep=1),
                },
                repeats=repeats,
                device=device,
            )
        ours_prefill, next_prefill = seconds["ours_prefill"], seconds["next_prefill"]
        ours_full, next_full = seconds["ours_full"], seconds["next_full"]
        ours_tokens = int((ours_inputs["input_ids"] == ours.config.image_token_id).sum())
        next_tokens = int((next_inputs["input_ids"] == nxt.config.image_token_id).sum())
        fixed_fit = grid_fit(height, width, fixed_geometry.grid, view)
        dyn_fit = grid_fit(height, width, grid, view)
        dyn_geometry = dyn.config.geometry.for_grid(grid)
        fixed_views = ours.image_encoder.views_per_image()
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
                "fixed_grid": "x".join(map(str, fixed_geometry.grid)),
                "fixed_tower_views": fixed_views,
                "fixed_kept_share": round(fixed_fit.kept_share, 3),
                "fixed_canvas_share": round(fixed_fit.canvas_share, 3),
                "dynamic_grid": "x".join(map(str, grid)),
                "dynamic_visual_tokens": int((dyn_inputs["input_ids"] == dyn.config.image_token_id).sum()),
                "dynamic_tower_views": dyn.image_encoder.views_per_image(dyn_geometry),
                "dynamic_kept_share": round(dyn_fit.kept_share, 3),
                "dynamic_canvas_share": round(dyn_fit.canvas_share, 3),
                "dynamic_forward_s": round(seconds["dynamic_full"], 4),
            }
        )
    return {
        "bench": "tokens",
        "llm": sizes.__dict__,
        "rows": rows,
        "device": device,
        "dtype": dtype,
        "threads": torch.get_num_threads(),
    }
