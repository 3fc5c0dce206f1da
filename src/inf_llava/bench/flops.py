"""Analytic FLOP counts (multiply-add = 2 FLOPs) of the image encoder, for achieved-throughput numbers."""

from __future__ import annotations

from ..configuration import InfLlavaConfig


def vit_layer_flops(tokens: int, width: int, intermediate: int) -> int:
    projections = 4 * tokens * width * width * 2  # q, k, v, out
    attention = 2 * tokens * tokens * width * 2  # scores and weighted sum, all heads
    mlp = 2 * tokens * width * intermediate * 2
    return projections + attention + mlp


def tower_flops(config: InfLlavaConfig, views: int, layers: int) -> int:
    vision = config.vision_config
    geo = config.geometry
    tokens = geo.tokens_per_view + 1  # + class token
    patch_embed = geo.tokens_per_view * 3 * geo.patch_size**2 * vision.hidden_size * 2
    return views * (patch_embed + layers * vit_layer_flops(tokens, vision.hidden_size, vision.intermediate_size))


def dem_flops(config: InfLlavaConfig, centre_only: bool) -> int:
    d = config.vision_config.hidden_size
    geo = config.geometry
    T, K = geo.tokens_per_view, geo.num_crops
    hidden = d // config.dem_ffn_ratio
    if centre_only:
        # branch A: T queries spread over K windows of T keys; branch B: T queries over T keys
        queries, keys_a, keys_b, fused = T, K * T, T, T
        scores = 2 * (T * T * d * 2)
    else:
        queries, keys_a, keys_b, fused = K * T, K * T, K * T, K * T
        scores = 2 * (K * T * T * d * 2)
    attention = 2 * scores  # QK^T and PV
    projections = (2 * queries + 2 * keys_a + 2 * keys_b + 2 * queries) * d * d * 2  # q,o per branch; k,v per branch
    ffn = 2 * fused * (d * hidden + hidden * d // 2) * 2
    return attention + projections + ffn


def projector_flops(config: InfLlavaConfig) -> int:
    T = config.geometry.tokens_per_view
    d, h = config.vision_config.hidden_size, config.text_config.hidden_size
    depth = 2 if config.projector_type == "mlp2x_gelu" else 1
    return T * (d * h + (depth - 1) * h * h) * 2


def encoder_flops(config: InfLlavaConfig, *, views: int, layers: int, centre_only: bool) -> dict[str, int]:
    parts = {
        "tower": tower_flops(config, views, layers),
        "dem": dem_flops(config, centre_only),
        "projector": projector_flops(config),
    }
    parts["total"] = sum(parts.values())
    return parts
