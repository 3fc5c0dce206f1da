"""`InfLlavaImageProcessor`: PIL image -> normalised ``(3, H, W)`` float32, exactly as the official CLIP path.

Steps (spec 8.1-8.3), for an output of ``(H, W)``:

1. RGB (EXIF orientation applied first; other modes as :func:`inf_llava.images.to_rgb` converts them);
2. pad to the output's aspect ratio with the CLIP-mean colour, each channel ``int(mean * 255)`` = (122, 116, 104) for
   CLIP (for a square output this is LLaVA's ``expand2square``, pasted at the centre of the long side); skipped when
   ``pad_to_square`` is False (the stage-1 "square" mode: resize + centre crop);
3. PIL bicubic resize (antialiased, ``reducing_gap=None``) so the image covers the output, the long side
   truncated as the CLIP processor does (``int(S * long / short)``);
4. centre crop, top-left at ``((h - H) // 2, (w - W) // 2)``;
5. ``x * (1/255)`` in float64, cast to float32, then ``(x - mean) / std`` in float32; HWC -> CHW.

Two output sizes matter (named modes of :meth:`InfLlavaImageProcessor.for_geometry`):

- ``"high_res"`` (default, the official *training* path): the processor produces the ``n * S`` image (the
  geometry's ``high_res_size``) directly from the original photo;
Very large inputs keep memory bounded: when the padded canvas would exceed :data:`MAX_CANVAS_PIXELS` (an extreme
aspect ratio such as 20000x10 pads to 20000x20000), the image is first shrunk so the canvas side is
:data:`PRESHRINK_FACTOR` times the output side. Images whose canvas fits (every ordinary photo) take the exact path.

- ``"base"`` (the official *inference* path used by its demo/eval scripts): the stock ``S`` (base size) processing; the
  model then bicubically upsamples to ``n * S`` inside ``encode_images``, so the high-resolution views hold no detail
  beyond the base-size image.

**Dynamic grids** (``grids`` set; a ``grid="dynamic"`` model): each image gets the grid
:func:`~inf_llava.geometry.select_grid` picks for its (upright) size; the steps above then produce that grid's canvas
``(n_h S, n_w S)`` (padded to the canvas's aspect ratio, not to a square), which is cut into its ``K = n_h n_w`` local
tiles. ``pixel_values`` is ``(N, K_max, 3, S, S)``: each image's tiles in row-major order, zero tiles after them up to
the most any image of the batch has; ``image_grids`` ``(N, 2)`` int64 holds each image's ``(n_h, n_w)``. The model
rebuilds the canvas from the tiles exactly (:func:`~inf_llava.modeling.cropping.merge_local`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from ..configuration import OFFICIAL_GEOMETRY
from ..geometry import DynamicGeometry, Geometry, normalize_grid, select_grid
from ..images import to_rgb
from ..modeling.cropping import local_crops

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODES = ("high_res", "base")
# Padded canvases above this many pixels are built from a pre-shrunk image (see the module docstring).
MAX_CANVAS_PIXELS = 64_000_000
PRESHRINK_FACTOR = 8


def pad_color(mean: Sequence[float]) -> tuple[int, ...]:
    """LLaVA's padding colour: each mean channel times 255, truncated (not rounded)."""
    return tuple(int(m * 255) for m in mean)


def pad_to_aspect(image: Image.Image, height: int, width: int, color: tuple[int, ...]) -> Image.Image:
    """Pad ``image`` with ``color`` to the aspect ratio ``width / height``, centred on the padded axis.

    For a square target this is LLaVA's ``expand2square``: a square image is returned unchanged.
    """
    w, h = image.size
    if w * height == h * width:
        return image
    if w * height > h * width:  # wider than the target: pad top and bottom
        canvas = Image.new(image.mode, (w, round(w * height / width)), color)
        canvas.paste(image, (0, (canvas.height - h) // 2))
    else:  # taller: pad left and right
        canvas = Image.new(image.mode, (round(h * width / height), h), color)
        canvas.paste(image, ((canvas.width - w) // 2, 0))
    return canvas


def cover_size(w: int, h: int, height: int, width: int) -> tuple[int, int]:
    """(new_w, new_h) that covers ``(height, width)`` keeping the aspect ratio; the long side is truncated.

    For a square target this is the CLIP processor's ``shortest_edge`` resize.
    """
    if w * height >= h * width:  # relatively wider: match the height
        return max(width, int(height * w / h)), height
    return width, max(height, int(width * h / w))


def preprocess_image(
    image: Image.Image,
    height: int,
    width: int,
    *,
    pad_to_square: bool = True,
    image_mean: Sequence[float] = CLIP_MEAN,
    image_std: Sequence[float] = CLIP_STD,
    rescale_factor: float = 1 / 255,
    resample: int = Image.Resampling.BICUBIC,
) -> np.ndarray:
    """One PIL image -> ``(3, height, width)`` float32, official CLIP numerics."""
    image = to_rgb(image)
    image = _bounded(image, height, width, pad_to_square, resample)
    if pad_to_square:
        image = pad_to_aspect(image, height, width, pad_color(image_mean))
    new_w, new_h = cover_size(image.width, image.height, height, width)
    if (new_w, new_h) != image.size:
        image = image.resize((new_w, new_h), resample=resample, reducing_gap=None)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    array = np.asarray(image, dtype=np.uint8)[top : top + height, left : left + width]
    array = (array * rescale_factor).astype(np.float32)  # uint8 * float -> float64, then float32
    mean = np.asarray(image_mean, dtype=np.float32)
    std = np.asarray(image_std, dtype=np.float32)
    array = (array - mean) / std
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def _bounded(image: Image.Image, height: int, width: int, pad: bool, resample: int) -> Image.Image:
    """Shrink ``image`` first when its padded canvas would be huge, so memory stays bounded for any input."""
    w, h = image.size
    canvas_w, canvas_h = (max(w, h * width // height), max(h, w * height // width)) if pad else (w, h)
    if canvas_w * canvas_h <= MAX_CANVAS_PIXELS:
        return image
    scale = PRESHRINK_FACTOR * max(height, width) / max(canvas_w, canvas_h)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return image.resize(size, resample=resample, reducing_gap=2.0)


def pad_tiles(tiles: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[(n_i, K_i, 3, S, S), ...] -> (sum n_i, max K_i, 3, S, S)``: concatenated, zero tiles after each image's own
    (the batch layout of dynamic-grid ``pixel_values``; ``image_grids`` says how many tiles are real)."""
    if not tiles:
        raise ValueError("no tiles to pad")
    width = max(t.shape[1] for t in tiles)
    padded = [
        t if t.shape[1] == width else torch.cat([t, t.new_zeros((t.shape[0], width - t.shape[1], *t.shape[2:]))], 1)
        for t in tiles
    ]
    return torch.cat(padded)


class InfLlavaImageProcessor(BaseImageProcessor):
    """Images -> ``pixel_values`` of shape ``(N, 3, H, W)`` for INF-LLaVA (fixed grid), or ``(N, K_max, 3, S, S)``
    tiles plus ``image_grids`` ``(N, 2)`` (dynamic grids).

    Args:
        size: ``{"height": H, "width": W}`` of the output (the high-resolution size for the training path, the base
            view size for the official inference path); with ``grids``, the (square) view size ``S``.
        pad_to_square: pad to the output aspect ratio with the mean colour first (``image_aspect_ratio="pad"``); if
            False, resize and centre-crop (stage-1 ``"square"``).
        image_mean / image_std: normalisation (CLIP's by default).
        rescale_factor: pixel scaling before normalisation.
        resample: PIL resampling filter (3 = bicubic).
        grids: candidate ``(n_h, n_w)`` grids of a dynamic-grid model (None: one fixed output size).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: dict[str, int] | None = None,
        pad_to_square: bool = True,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        rescale_factor: float = 1 / 255,
        resample: int = int(Image.Resampling.BICUBIC),
        grids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ):
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        if size is None:
            size = dict(zip(("height", "width"), OFFICIAL_GEOMETRY.high_res_size, strict=True))
        size = dict(size)
        if set(size) != {"height", "width"} or min(size.values()) < 1:
            raise ValueError(f"size must be {{'height': H, 'width': W}} with positive sides, got {size}")
        self.size = {"height": int(size["height"]), "width": int(size["width"])}
        self.pad_to_square = bool(pad_to_square)
        self.image_mean = [float(m) for m in image_mean]
        self.image_std = [float(s) for s in image_std]
        self.rescale_factor = float(rescale_factor)
        self.resample = int(resample)
        self.grids = None
        if grids is not None:
            if self.size["height"] != self.size["width"]:
                raise ValueError(f"with dynamic grids, size is the square view size; got {self.size}")
            self.grids = [list(g) for g in DynamicGeometry(tuple(map(tuple, grids)), self.size["height"], 1).grids]

    @property
    def is_dynamic(self) -> bool:
        return self.grids is not None

    def select_grid(self, image: Any) -> tuple[int, int]:
        """The grid a dynamic-grid processor gives ``image`` (decided on its upright size)."""
        if self.grids is None:
            raise ValueError("this image processor has one fixed output size, not dynamic grids")
        upright = to_rgb(_to_pil(image))
        return select_grid(upright.height, upright.width, [tuple(g) for g in self.grids], self.size["height"])

    @classmethod
    def for_geometry(cls, geometry: Geometry, mode: str = "high_res", **kwargs: Any) -> InfLlavaImageProcessor:
        """The processor for a model geometry: ``"high_res"`` (training path, default) or ``"base"`` (official
        inference path, in-model upsampling)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if geometry.is_dynamic:
            if mode != "high_res":
                raise ValueError(
                    "dynamic grids need the 'high_res' preprocessing path (the 'base' path is the official fixed-grid "
                    "inference path)"
                )
            side = geometry.view_size
            return cls(size={"height": side, "width": side}, grids=[list(g) for g in geometry.grids], **kwargs)
        height, width = geometry.high_res_size if mode == "high_res" else geometry.base_size
        return cls(size={"height": height, "width": width}, **kwargs)

    def preprocess(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        if kwargs:
            raise TypeError(f"unexpected image processor arguments: {', '.join(sorted(kwargs))}")
        if self.grids is not None:
            return self._preprocess_dynamic(_as_image_list(images), return_tensors)
        batch = [self.process_one(image) for image in _as_image_list(images)]
        pixel_values: Any = batch
        if return_tensors in ("pt", "np"):
            stacked = (
                np.stack(batch) if batch else np.zeros((0, 3, self.size["height"], self.size["width"]), np.float32)
            )
            pixel_values = torch.from_numpy(stacked) if return_tensors == "pt" else stacked
        return BatchFeature(data={"pixel_values": pixel_values})

    def _preprocess_dynamic(self, images: list[Any], return_tensors: str | None) -> BatchFeature:
        side = self.size["height"]
        processed = [self.process_tiles(image) for image in images]
        grids = [list(grid) for _, grid in processed]
        if return_tensors not in ("pt", "np"):
            return BatchFeature(data={"pixel_values": [t for t, _ in processed], "image_grids": grids})
        if processed:
            pixel_values = pad_tiles([torch.from_numpy(t).unsqueeze(0) for t, _ in processed])
        else:
            pixel_values = torch.zeros((0, 1, 3, side, side))
        image_grids = torch.tensor(grids, dtype=torch.long).reshape(len(grids), 2)
        if return_tensors == "np":
            pixel_values, image_grids = pixel_values.numpy(), image_grids.numpy()
        return BatchFeature(data={"pixel_values": pixel_values, "image_grids": image_grids})

    def process_tiles(self, image: Any) -> tuple[np.ndarray, tuple[int, int]]:
        """Dynamic grids: one image -> its ``(K, 3, S, S)`` local tiles and its grid ``(n_h, n_w)``."""
        upright = to_rgb(_to_pil(image))
        grid = self.select_grid(upright)
        canvas = self.process_one(upright, self.geometry_for(grid).high_res_size)
        return local_crops(torch.from_numpy(canvas), grid).numpy(), grid

    def geometry_for(self, grid: Sequence[int]) -> Geometry:
        """The geometry of one grid at this processor's view size (the patch size does not matter here)."""
        n_h, n_w = normalize_grid(tuple(grid))
        return Geometry(n_h, n_w, self.size["height"], 1)

    def __call__(self, images: Any, return_tensors: str | None = "pt", **kwargs: Any) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **kwargs)

    def process_one(self, image: Any, size: tuple[int, int] | None = None) -> np.ndarray:
        """One image -> ``(3, H, W)`` float32 at ``size`` (default: this processor's output size)."""
        height, width = size if size is not None else (self.size["height"], self.size["width"])
        return preprocess_image(
            _to_pil(image),
            height,
            width,
            pad_to_square=self.pad_to_square,
            image_mean=self.image_mean,
            image_std=self.image_std,
            rescale_factor=self.rescale_factor,
            resample=self.resample,
        )

    def settings(self) -> dict[str, Any]:
        """The preprocessing settings apart from the output geometry (``size`` / ``grids``): what
        :meth:`for_geometry` takes to build the same preprocessing for another geometry."""
        return {
            "pad_to_square": self.pad_to_square,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "rescale_factor": self.rescale_factor,
            "resample": self.resample,
        }

    def to_dict(self) -> dict[str, Any]:
        out = {"size": dict(self.size), **self.settings()}
        if self.grids is not None:
            out["grids"] = [list(g) for g in self.grids]
        out["image_processor_type"] = type(self).__name__
        return out


def _as_image_list(images: Any) -> list[Any]:
    if images is None:
        return []
    if isinstance(images, (Image.Image, np.ndarray, torch.Tensor)):
        return [images]
    flat = []
    for item in images:
        flat.extend(_as_image_list(item) if isinstance(item, (list, tuple)) else [item])
    return flat


def _to_pil(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        if array.dtype != np.uint8:
            if np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
                array = array * 255
            array = np.clip(array, 0, 255).astype(np.uint8)
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        return Image.fromarray(array)
    raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")
