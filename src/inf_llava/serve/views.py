"""What the model sees of an image: the DCM layout (local tiles and global strided views) as PNG images.

Computed by the model's own code: the processor, the encoder's ``canvases`` / ``high_res`` steps (for a dynamic-grid
model, the grid chosen for this image), then DCM's ``local_crops`` / ``global_crops``, un-normalised for display.
(The encoder itself may skip encoding strided views whose features cannot reach the output; the page shows the full
layout of the method.)
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..inference import InfLlavaEngine
from ..modeling.cropping import global_crops, local_crops


def dcm_views(engine: InfLlavaEngine, image: Image.Image) -> dict[str, Any]:
    """``{"grid", "view_size", "high_res", "input_size", "image", "local", "global"}`` with PNG data URLs."""
    processor = engine.processor.image_processor
    encoder = engine.model.image_encoder
    inputs = processor([image], return_tensors="pt")  # pixel_values (1, 3, h, w), or tiles + image_grids
    with torch.inference_mode():
        [(geometry, _, canvas)] = encoder.canvases(inputs["pixel_values"].float(), inputs.get("image_grids"))
        big = encoder.high_res(canvas, geometry)  # (1, 3, n_h * S, n_w * S)
        tiles = local_crops(big, geometry.grid)[0]  # (K, 3, S, S)
        strided = global_crops(big, geometry.grid)[0]  # (K, 3, S, S)
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)

    def png(chw: torch.Tensor) -> str:
        array = ((chw.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    return {
        "grid": list(geometry.grid),
        "dynamic": encoder.is_dynamic,
        "view_size": geometry.view_size,
        "high_res": list(geometry.high_res_size),
        "input_size": [image.width, image.height],
        "tokens_per_image": geometry.tokens_per_image,
        "image": png(big[0]),
        "local": [png(v) for v in tiles],
        "global": [png(v) for v in strided],
    }
