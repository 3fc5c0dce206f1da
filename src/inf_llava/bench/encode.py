"""``bench encode``: the image encoder at the released model's shape against the straightforward official
computation, in one run.

Both sides share weights: a tower shaped like ``configuration.CLIP_L14_336`` (random weights; ``layers`` of them, the
config's ``num_hidden_layers`` in the real model), the DEM and the ``mlp2x_gelu`` projector to an LM of width
``lm_width``. The reference is :func:`inf_llava.reference.official_encode_images`: ``2K + 1`` separate tower calls
keeping every hidden state, per-window DEM attention loops. Ours is
:class:`~inf_llava.modeling.image_encoder.InfLlavaImageEncoder`. The sides are timed in turns, so a drift in the
machine's speed moves them alike.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from transformers import AutoModel, CLIPVisionConfig, LlamaConfig

from ..configuration import CLIP_L14_336, InfLlavaConfig
from ..conversion.keys import dem_key_to_official
from ..modeling import packed_linear
from ..modeling.image_encoder import InfLlavaImageEncoder
from ..reference import SpatialEmbed, official_encode_images
from ..runtime import DTYPES
from .flops import encoder_flops
from .timing import interleaved_median_seconds, matmul_peak_gflops

# The equality check: fp32 must agree to 1e-4 relative; bf16 rounds every layer to 8 bits of mantissa, so two
# differently batched bf16 computations agree only to about 1e-2 of the feature scale.
TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 5e-2, torch.float16: 1e-2}


def encoder_config(layers: int, lm_width: int = 4096, **vision_overrides: Any) -> InfLlavaConfig:
    """``configuration.CLIP_L14_336`` with ``layers`` layers (``vision_overrides`` shrink it for smoke tests)."""
    vision = CLIPVisionConfig(**{**CLIP_L14_336, "num_hidden_layers": layers, **vision_overrides})
    text = LlamaConfig(hidden_size=lm_width, num_hidden_layers=1, num_attention_heads=32, vocab_size=32)
    return InfLlavaConfig(vision_config=vision, text_config=text, image_token_id=0)


def encoder_shape(config: InfLlavaConfig) -> dict[str, Any]:
    """What the report says about the benchmarked encoder, read from its config."""
    vision, geo = config.vision_config, config.geometry
    return {
        "width": vision.hidden_size,
        "patches_per_side": geo.patches_per_side,
        "heads": vision.num_attention_heads,
        "head_dim": vision.hidden_size // vision.num_attention_heads,
        "grid": list(geo.grid),
        "projector": config.projector_type,
        "lm_width": config.text_config.hidden_size,
    }


def build_pair(layers: int, seed: int = 0, lm_width: int = 4096, **vision_overrides: Any):
    """(config, our encoder, full-depth reference tower, reference DEM) sharing weights, in fp32, eval mode."""
    config = encoder_config(layers, lm_width, **vision_overrides)
    torch.manual_seed(seed)
    ours = InfLlavaImageEncoder(config).eval()
    full = AutoModel.from_config(copy.deepcopy(config.vision_config)).eval()
    full.load_state_dict(ours.vision_tower.state_dict(), strict=False)  # the unused top layer keeps its own weights
    ref_dem = SpatialEmbed(config.vision_config.hidden_size, config.dem_num_heads).eval()
    ref_dem.load_state_dict({dem_key_to_official(k): v for k, v in ours.dem.state_dict().items()})
    return config, ours, full, ref_dem


def run(
    dtype: str = "fp32",
    layers: int = 24,
    repeats: int = 3,
    seed: int = 0,
    compare_fp32: bool = True,
    lm_width: int = 4096,
    peak_shapes: list[tuple[int, int, int]] | None = None,
    device: str = "cpu",
    compile: bool = False,
    **vision_overrides: Any,
) -> dict:
    """One JSON-able row. ``compile=True`` times ours under ``torch.compile`` with weight freezing
    (:meth:`InfLlavaImageEncoder.compile`); the first call, which compiles, is reported as ``compile_s``."""
    torch_dtype = DTYPES[dtype]
    config, ours, full, ref_dem = build_pair(layers, seed, lm_width, **vision_overrides)
    ours_fp32 = ours
    if torch_dtype != torch.float32 and compare_fp32:
        ours_fp32 = copy.deepcopy(ours).to(device)
    ours, full, ref_dem = (m.to(device, torch_dtype) for m in (ours, full, ref_dem))
    # bf16 on CPU: ours with plain nn.Linear layers too, to measure what the pre-packed weights bring on this CPU
    plain_linears = None
    if torch_dtype == torch.bfloat16 and torch.device(device).type == "cpu" and not compile and packed_linear._PACKING:
        plain_linears = packed_linear.restore_linears(copy.deepcopy(ours))
    if compile:
        ours.compile(dynamic=False, freeze=True)
    geo = config.geometry
    torch.manual_seed(seed + 1)
    pixels = torch.randn(1, 3, *geo.high_res_size).to(device, torch_dtype)
    n = geo.grid_h

    def reference() -> torch.Tensor:
        return official_encode_images(pixels, full, ref_dem, ours.projector, n=n)

    def fast() -> torch.Tensor:
        return ours(pixels)

    with torch.inference_mode():
        expected = reference()
        start = time.perf_counter()
        got = fast()
        first_call_s = time.perf_counter() - start
        max_rel_err = ((got.float() - expected.float()).abs().max() / expected.float().abs().max()).item()
        sides = {"reference": reference, "ours": fast}
        if compare_fp32 and torch_dtype != torch.float32:
            pixels32 = pixels.float()
            sides["ours_fp32"] = lambda: ours_fp32(pixels32)
        if plain_linears is not None:
            sides["ours_plain_linears"] = lambda: plain_linears(pixels)
        seconds = interleaved_median_seconds(sides, repeats=repeats, device=device)
        reference_s, ours_s, fp32_s = seconds["reference"], seconds["ours"], seconds.get("ours_fp32")
    views = geo.num_crops + 1 if ours.centre_only else ours.views(pixels).shape[1]
    flops = encoder_flops(config, views=views, layers=config.num_tower_layers, centre_only=ours.centre_only)
    reference_flops = encoder_flops(config, views=2 * geo.num_crops + 1, layers=layers, centre_only=False)
    peak = matmul_peak_gflops(torch_dtype, device=device, shapes=peak_shapes)
    achieved = flops["total"] / ours_s / 1e9
    result: dict[str, Any] = {
        "bench": "encode",
        "dtype": dtype,
        "compiled": compile,
        "layers": layers,
        "reference_s": round(reference_s, 4),
        "ours_s": round(ours_s, 4),
        "speedup": round(reference_s / ours_s, 3),
        "max_rel_err": float(f"{max_rel_err:.3e}"),
        "tolerance": TOLERANCE[torch_dtype],
        "equal_outputs": max_rel_err <= TOLERANCE[torch_dtype],
        "achieved_gflops": round(achieved, 1),
        "peak_gflops": round(peak, 1),
        "fraction_of_peak": round(achieved / peak, 3),
        "ours_tflop": round(flops["total"] / 1e12, 3),
        "reference_tflop": round(reference_flops["total"] / 1e12, 3),
        "tower_views": {"reference": 2 * geo.num_crops + 1, "ours": views},
        "shape": encoder_shape(config),
        "device": str(pixels.device),
        "threads": torch.get_num_threads(),
    }
    if compile:
        result["compile_s"] = round(first_call_s, 1)
    if plain_linears is not None:
        layers = [m for m in ours.modules() if isinstance(m, packed_linear.PackedLinear)]
        result["plain_linears_s"] = round(seconds["ours_plain_linears"], 4)
        result["packed_linears_speedup"] = round(seconds["ours_plain_linears"] / ours_s, 3)
        result["packed_layers"] = [sum(m._packed is not None for m in layers), len(layers)]  # used / all
    if fp32_s is not None:
        result["ours_fp32_s"] = round(fp32_s, 4)
        result["speedup_vs_fp32"] = round(fp32_s / ours_s, 3)
    return result
