"""What the model sees of an image: the DCM layout (local tiles and global strided views) as PNG images.

Computed by the model's own code path (the processor, then ``InfLlavaImageEncoder.views``, i.e. ``local_crops`` /
``global_crops``), then un-normalised for display, so the web page shows exactly the crops the vision tower gets.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..inference import InfLlavaEngine


def dcm_views(engine: InfLlavaEngine, image: Image.Image) -> dict[str, Any]:
    """``{"grid", "view_size", "high_res", "input_size", "image", "local", "global"}`` with PNG data URLs."""
    processor = engine.processor.image_processor
    encoder = engine.model.image_encoder
    geometry = encoder.geometry
    pixel_values = processor([image], return_tensors="pt")["pixel_values"].float()  # (1, 3, h, w)
    with torch.inference_mode():
        big = encoder.high_res(pixel_values)  # (1, 3, n_h * S, n_w * S)
        views = encoder.views(pixel_values)[0]  # (V, 3, S, S): K local, K global (+ base view)
    mean = torch.tensor(processor.image_mean).view(3, 1, 1)
    std = torch.tensor(processor.image_std).view(3, 1, 1)
    K = geometry.num_crops

    def png(chw: torch.Tensor) -> str:
        array = ((chw.float() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    return {
        "grid": list(geometry.grid),
        "view_size": geometry.view_size,
        "high_res": list(geometry.high_res_size),
        "input_size": [image.width, image.height],
        "tokens_per_image": geometry.tokens_per_image,
        "image": png(big[0]),
        "local": [png(v) for v in views[:K]],
        "global": [png(v) for v in views[K : 2 * K]],
    }
