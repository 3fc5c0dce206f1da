"""``bench linear``: the pre-packed oneDNN bf16 linear (:mod:`inf_llava.modeling.packed_linear`) against
``F.linear`` at the released model's GEMM shapes, in one run: time per product, the ratio, and whether this CPU
verified the packed kernel exact for that shape (only then do the model's layers use it).

Shapes come from :func:`inf_llava.presets.official_config`: the tower's projections and MLP at the row count of one
image (every view that reaches the output, each ``tokens_per_view + 1`` tokens with CLS), and the language model's
projections at one decoding step (1 row). The sides are timed in turns.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import packed_linear
from ..modeling.packed_linear import EXACTNESS, use_packed_linears
from ..runtime import cpu_matrix_isa
from .timing import interleaved_median_seconds


def official_shapes() -> list[tuple[str, int, int, int]]:
    """``(name, rows, in_features, out_features)`` of the released model's main GEMMs."""
    from ..modeling.image_encoder import InfLlavaImageEncoder
    from ..presets import official_config

    config = official_config()
    geo, vision, text = config.geometry, config.vision_config, config.text_config
    with torch.device("meta"):
        views = InfLlavaImageEncoder(config).plan.count(geo.num_crops)
    rows = views * (geo.tokens_per_view + 1)  # + CLS
    d, mlp = vision.hidden_size, vision.intermediate_size
    h, kv = text.hidden_size, text.num_key_value_heads * (text.hidden_size // text.num_attention_heads)
    return [
        ("tower q/k/v/out", rows, d, d),
        ("tower fc1", rows, d, mlp),
        ("tower fc2", rows, mlp, d),
        ("LM decode q/out", 1, h, h),
        ("LM decode k/v", 1, h, kv),
        ("LM decode gate/up", 1, h, text.intermediate_size),
        ("LM decode down", 1, text.intermediate_size, h),
    ]


def run(
    repeats: int = 5, shapes: list[tuple[str, int, int, int]] | None = None, seed: int = 0, device: str = "cpu"
) -> dict[str, Any]:
    """One JSON-able result: a row per shape."""
    if torch.device(device).type != "cpu":
        raise ValueError("bench linear measures the CPU bf16 packed path; it has no meaning on " + device)
    rows_out = []
    torch.manual_seed(seed)
    for name, rows, in_features, out_features in shapes or official_shapes():
        layer = nn.Linear(in_features, out_features).to(torch.bfloat16)
        packed_layer = use_packed_linears(nn.Sequential(copy.deepcopy(layer)))[0]
        x = torch.randn(rows, in_features).to(torch.bfloat16)
        row: dict[str, Any] = {"name": name, "rows": rows, "in": in_features, "out": out_features}
        with torch.inference_mode():
            packed_layer(x)  # verifies this (shape, rows) pair on this CPU
            verdict = EXACTNESS.verdict((in_features, out_features, True), rows)
            row["exact"] = bool(verdict)
            try:
                weight = torch.ops.mkldnn._reorder_linear_weight(layer.weight, rows)
            except RuntimeError as error:
                row["packed_kernel"] = str(error).splitlines()[0]
                rows_out.append(row)
                continue

            def packed(x=x, weight=weight, bias=layer.bias):
                return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

            def plain(x=x, layer=layer):
                return F.linear(x, layer.weight, layer.bias)

            seconds = interleaved_median_seconds({"plain": plain, "packed": packed}, repeats=repeats)
        row.update(
            plain_ms=round(seconds["plain"] * 1e3, 3),
            packed_ms=round(seconds["packed"] * 1e3, 3),
            speedup=round(seconds["plain"] / seconds["packed"], 3),
        )
        rows_out.append(row)
    return {
        "bench": "linear",
        "cpu_matrix_isa": cpu_matrix_isa(),
        "packing_enabled": packed_linear._PACKING,
        "rows": rows_out,
        "threads": torch.get_num_threads(),
    }
