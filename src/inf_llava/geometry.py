"""Image geometry of INF-LLaVA: grid, view size, patch grid and token counts, defined in one place.

Notation used across the package:

- ``n_h, n_w``: the DCM grid; ``K = n_h * n_w`` sub-images per perspective.
- ``S``: the vision tower's input size, one *view* (the tower config's ``image_size``).
- ``P``: the tower's patch size; ``p = S // P`` patches per view side.
- high-resolution image: ``(n_h * S, n_w * S)`` pixels, feature map ``(n_h * p, n_w * p)``.
- tokens per image fed to the LLM: ``p * p``, whatever the input resolution and whatever the grid.

A model has either one fixed grid (:class:`Geometry`; the official 3x3) or a set of candidate grids from which one is
chosen per image (:class:`DynamicGeometry`, ``grid="dynamic"`` in the config; docs/dynamic-grids.md). Both answer
``for_image(height, width)`` with the :class:`Geometry` of that image, so code that handles one image at a time
never needs to know which kind it has.

The official values follow from the official config (``presets.official_config().geometry``: the CLIP-L/14-336
tower of ``configuration.CLIP_L14_336`` and a 3x3 grid); ``tests/test_geometry.py`` checks them. Everything else (the
processor's output size, the model's view count, the number of image-token slots) is derived from
:class:`Geometry`, never written as a number."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

DYNAMIC = "dynamic"  # the config's ``grid`` value that selects a grid per image


class _Views:
    """What does not depend on the grid, shared by :class:`Geometry` and :class:`DynamicGeometry` (both have
    ``view_size`` and ``patch_size`` fields)."""

    view_size: int
    patch_size: int

    @property
    def patches_per_side(self) -> int:
        """Patch tokens along one side of a view, ``p = S // P``."""
        return self.view_size // self.patch_size

    @property
    def tokens_per_view(self) -> int:
        return self.patches_per_side**2

    @property
    def tokens_per_image(self) -> int:
        """Visual tokens one image contributes to the LLM (one view's worth, Eq. 7 of the paper), whatever the
        grid."""
        return self.tokens_per_view

    @property
    def base_size(self) -> tuple[int, int]:
        """(height, width) of the low-resolution base view."""
        return (self.view_size, self.view_size)


@dataclass(frozen=True)
class Geometry(_Views):
    """Grid and view geometry shared by the processor and the model.

    Args:
        grid_h: number of sub-images along the height (``n_h``).
        grid_w: number of sub-images along the width (``n_w``).
        view_size: side of one square view in pixels, the vision tower's input size (``S``).
        patch_size: the vision tower's patch size (``P``).
    """

    grid_h: int
    grid_w: int
    view_size: int
    patch_size: int

    def __post_init__(self) -> None:
        for name in ("grid_h", "grid_w", "view_size", "patch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.view_size % self.patch_size:
            raise ValueError(
                f"view size {self.view_size} is not a multiple of the patch size {self.patch_size}; "
                "the vision tower would not see a whole number of patches"
            )

    @property
    def grid(self) -> tuple[int, int]:
        return (self.grid_h, self.grid_w)

    @property
    def num_crops(self) -> int:
        """Sub-images per perspective, ``K = n_h * n_w``."""
        return self.grid_h * self.grid_w

    @property
    def high_res_size(self) -> tuple[int, int]:
        """(height, width) of the high-resolution image that DCM cuts into views."""
        return (self.grid_h * self.view_size, self.grid_w * self.view_size)

    @property
    def feature_map_size(self) -> tuple[int, int]:
        """(height, width) in tokens of the recombined high-resolution feature map."""
        p = self.patches_per_side
        return (self.grid_h * p, self.grid_w * p)

    @property
    def centre_phase(self) -> tuple[int, int] | None:
        """The strided view that equals the bicubic low-resolution view, or None if no view does.

        With ``align_corners=False`` a bicubic downscale by an odd integer factor ``n`` samples source position
        ``n * i + (n - 1) / 2`` with weights (0, 1, 0, 0): an exact pick of the strided view at phase ``(n - 1) / 2``
        (spec section 6). Even factors interpolate, so no view matches.
        """
        if self.grid_h % 2 and self.grid_w % 2:
            return ((self.grid_h - 1) // 2, (self.grid_w - 1) // 2)
        return None

    @property
    def centre_view_index(self) -> int | None:
        """Index ``i * n_w + j`` of :attr:`centre_phase` among the strided views, or None."""
        phase = self.centre_phase
        return None if phase is None else phase[0] * self.grid_w + phase[1]

    @property
    def supports_centre_pick(self) -> bool:
        """True when the bilinear 'pooling' of the DEM output is an exact pick of centre tokens that can be computed
        alone: odd grid (exact pick) and whole windows of picked tokens (``p`` divisible by ``n``)."""
        p = self.patches_per_side
        return self.centre_phase is not None and p % self.grid_h == 0 and p % self.grid_w == 0

    # ---- the interface shared with DynamicGeometry ---------------------------------------------------------
    is_dynamic = False

    def describe(self) -> str:
        """One line for logs: the grid, the view size, the input size and :attr:`tokens_per_image`."""
        (height, width), T = self.high_res_size, self.tokens_per_image
        return (
            f"{self.grid_h}x{self.grid_w} grid of {self.view_size}-px views ({height}x{width} input), {T} image tokens"
        )

    @property
    def grids(self) -> tuple[tuple[int, int], ...]:
        """The grids this geometry can use: just its own."""
        return (self.grid,)

    @property
    def max_crops(self) -> int:
        """The most sub-images per perspective any image gets: ``K``."""
        return self.num_crops

    def for_image(self, height: int, width: int) -> Geometry:
        """The geometry of one image: a fixed grid is used for every image (the processor pads to its layout)."""
        return self

    def for_grid(self, grid: int | tuple[int, int] | list[int]) -> Geometry:
        """This geometry, after checking that ``grid`` is its grid."""
        if normalize_grid(grid) != self.grid:
            raise ValueError(f"grid {_name(grid)} is not this model's {_name(self.grid)} grid")
        return self

    @classmethod
    def from_config(cls, config) -> Geometry:
        """Geometry of an :class:`~inf_llava.InfLlavaConfig` with a fixed grid (grid from the config, view and patch
        size from its vision config); :func:`geometry_from_config` handles dynamic grids too."""
        if config.grid == DYNAMIC:
            raise ValueError("this config has grid='dynamic'; use geometry_from_config(config) / config.geometry")
        grid_h, grid_w = config.grid
        view_size, patch_size = _view_and_patch(config.vision_config)
        return cls(grid_h=grid_h, grid_w=grid_w, view_size=view_size, patch_size=patch_size)

    def to_dict(self) -> dict[str, int]:
        return {
            "grid_h": self.grid_h,
            "grid_w": self.grid_w,
            "view_size": self.view_size,
            "patch_size": self.patch_size,
        }


@dataclass(frozen=True)
class DynamicGeometry(_Views):
    """A set of candidate grids; each image gets the one :func:`select_grid` picks for its size.

    Everything that does not depend on the grid (view size, patch grid, tokens per image, the base view) is the same
    as in :class:`Geometry`; :meth:`for_image` gives the full :class:`Geometry` of one image.

    Args:
        grids: candidate ``(n_h, n_w)`` grids, in tie-break order (earlier wins a complete tie).
        view_size: side of one square view in pixels (``S``).
        patch_size: the vision tower's patch size (``P``).
    """

    grids: tuple[tuple[int, int], ...]
    view_size: int
    patch_size: int

    is_dynamic = True

    def describe(self) -> str:
        """One line for logs: the candidate count, the ``max_views`` budget, the view size and the token count."""
        return (
            f"dynamic grid ({len(self.grids)} candidates, at most {self.max_crops} sub-images) of {self.view_size}-px "
            f"views, {self.tokens_per_image} image tokens"
        )

    def __post_init__(self) -> None:
        if isinstance(self.grids, (str, bytes)) or not self.grids:
            raise ValueError("a dynamic grid needs at least one candidate grid, got none")
        grids = tuple(normalize_grid(g) for g in self.grids)
        if len(set(grids)) != len(grids):
            repeated = sorted({g for g in grids if grids.count(g) > 1})
            raise ValueError(f"candidate grids repeat {', '.join(_name(g) for g in repeated)}")
        object.__setattr__(self, "grids", grids)
        Geometry(1, 1, self.view_size, self.patch_size)  # validates view and patch sizes

    @classmethod
    def from_budget(cls, max_views: int, view_size: int, patch_size: int) -> DynamicGeometry:
        """All grids with at most ``max_views`` sub-images per perspective (:func:`candidate_grids`)."""
        return cls(candidate_grids(max_views), view_size, patch_size)

    @classmethod
    def from_config(cls, config) -> DynamicGeometry:
        """The dynamic geometry of a ``grid="dynamic"`` config (candidates: ``grid_candidates`` if given, else every
        grid within ``max_views``; each checked against the budget)."""
        view_size, patch_size = _view_and_patch(config.vision_config)
        max_views = config.max_views
        if not isinstance(max_views, int) or isinstance(max_views, bool) or max_views < 1:
            raise ValueError(f"max_views must be a positive integer, got {max_views!r}")
        if config.grid_candidates is None:
            return cls.from_budget(max_views, view_size, patch_size)
        geometry = cls(tuple(config.grid_candidates), view_size, patch_size)
        for n_h, n_w in geometry.grids:
            if n_h * n_w > max_views:
                raise ValueError(
                    f"candidate grid {n_h}x{n_w} has {n_h * n_w} sub-images per perspective, over max_views={max_views}"
                )
        return geometry

    @property
    def max_crops(self) -> int:
        """The most sub-images per perspective any image gets (the padded tile axis of ``pixel_values``)."""
        return max(n_h * n_w for n_h, n_w in self.grids)

    def select_grid(self, height: int, width: int) -> tuple[int, int]:
        """The candidate grid for an image of ``height x width`` pixels (:func:`select_grid`)."""
        return select_grid(height, width, self.grids, self.view_size)

    def for_image(self, height: int, width: int) -> Geometry:
        return self.for_grid(self.select_grid(height, width))

    def for_grid(self, grid: int | tuple[int, int] | list[int]) -> Geometry:
        """The :class:`Geometry` of one candidate grid; a grid outside the candidates raises."""
        n_h, n_w = normalize_grid(grid)
        if (n_h, n_w) not in self.grids:
            raise ValueError(
                f"grid {n_h}x{n_w} is not one of this model's candidate grids ({', '.join(map(_name, self.grids))})"
            )
        return Geometry(n_h, n_w, self.view_size, self.patch_size)

    def to_dict(self) -> dict:
        return {"grids": [list(g) for g in self.grids], "view_size": self.view_size, "patch_size": self.patch_size}


def candidate_grids(max_views: int) -> tuple[tuple[int, int], ...]:
    """Every ``(n_h, n_w)`` with ``n_h * n_w <= max_views``, ordered by ``(n_h * n_w, n_h)``: fewer sub-images
    first, then wider grids first (the order decides complete ties in :func:`select_grid`)."""
    if not isinstance(max_views, int) or isinstance(max_views, bool) or max_views < 1:
        raise ValueError(f"max_views must be a positive integer, got {max_views!r}")
    grids = [(n_h, n_w) for n_h in range(1, max_views + 1) for n_w in range(1, max_views // n_h + 1)]
    return tuple(sorted(grids, key=lambda g: (g[0] * g[1], g[0])))


@dataclass(frozen=True)
class GridFit:
    """How an image of ``height x width`` fits the canvas ``(n_h S, n_w S)`` of a grid, keeping its aspect ratio
    (exact fractions): ``scale = min(n_h S / height, n_w S / width)``; ``kept`` = the image's own pixels that survive
    (``min(scale, 1)^2 height width``: upscaling adds none); ``canvas`` = ``n_h n_w S^2``; ``aspect_error`` =
    ``max(r, 1/r)`` with ``r = (n_w / n_h) / (width / height)`` (1 = the same shape)."""

    grid: tuple[int, int]
    scale: Fraction
    kept: Fraction
    canvas: int
    aspect_error: Fraction
    image_pixels: int

    @property
    def kept_share(self) -> float:
        """Share of the image's pixels kept (1.0 when the canvas holds it whole)."""
        return float(self.kept / self.image_pixels)

    @property
    def canvas_share(self) -> float:
        """Share of the canvas the (resized) image covers; the rest is padding."""
        return float(self.scale * self.scale * self.image_pixels / self.canvas)


def grid_fit(height: int, width: int, grid: tuple[int, int], view_size: int) -> GridFit:
    """The :class:`GridFit` of one image and one grid."""
    if not (isinstance(height, int) and isinstance(width, int)) or height < 1 or width < 1:
        raise ValueError(f"image size must be positive integers, got {height}x{width}")
    n_h, n_w = normalize_grid(grid)
    canvas_h, canvas_w = n_h * view_size, n_w * view_size
    scale = min(Fraction(canvas_h, height), Fraction(canvas_w, width))
    kept = min(scale, Fraction(1)) ** 2 * height * width
    ratio = Fraction(canvas_w * height, canvas_h * width)
    return GridFit((n_h, n_w), scale, kept, canvas_h * canvas_w, max(ratio, 1 / ratio), height * width)


def select_grid(
    height: int, width: int, grids: tuple[tuple[int, int], ...] | list[tuple[int, int]], view_size: int
) -> tuple[int, int]:
    """The grid that best fits an image of ``height x width`` pixels (AnyRes-style, in exact rational arithmetic).

    Each candidate ``(n_h, n_w)`` is scored by :func:`grid_fit` (the image fitted inside the canvas ``(n_h S, n_w S)``
    keeping its aspect ratio). The rule, in order:

    1. most **kept pixels** ``min(s, 1)^2 * height * width`` with ``s = min(n_h S / height, n_w S / width)`` (the
       image's own pixels that survive; upscaling adds none), so large images get the grid that preserves the most
       resolution;
    2. then the smallest **canvas** ``n_h n_w S^2`` (fewer views, less padding), so small images get the smallest
       grid that holds them whole;
    3. then the smallest **aspect error** ``max(r, 1/r)`` with ``r = (n_w / n_h) / (width / height)``;
    4. then the earlier candidate.
    """
    if not grids:
        raise ValueError("no candidate grids to choose from")
    best, best_key = None, None
    for grid in grids:
        fit = grid_fit(height, width, grid, view_size)
        key = (-fit.kept, fit.canvas, fit.aspect_error)
        if best_key is None or key < best_key:
            best, best_key = fit.grid, key
    return best


def geometry_from_config(config) -> Geometry | DynamicGeometry:
    """The geometry of an :class:`~inf_llava.InfLlavaConfig`: fixed or dynamic, as its ``grid`` says."""
    if config.grid == DYNAMIC:
        return DynamicGeometry.from_config(config)
    return Geometry.from_config(config)


def geometry_from_dict(data) -> Geometry | DynamicGeometry:
    """Inverse of ``to_dict`` of either kind (what processors save)."""
    data = dict(data)
    if "grids" in data:
        return DynamicGeometry(tuple(tuple(g) for g in data.pop("grids")), **data)
    return Geometry(**data)


def _view_and_patch(vision) -> tuple[int, int]:
    image_size = vision.image_size
    if isinstance(image_size, (list, tuple)):
        if image_size[0] != image_size[1]:
            raise ValueError(f"vision towers with non-square inputs are not supported (image_size={image_size})")
        image_size = image_size[0]
    patch_size = vision.patch_size
    if isinstance(patch_size, (list, tuple)):
        patch_size = patch_size[0]
    return int(image_size), int(patch_size)


def _name(grid) -> str:
    try:
        n_h, n_w = normalize_grid(grid)
    except ValueError:
        return repr(grid)
    return f"{n_h}x{n_w}"


def normalize_grid(grid: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``(2, 3)`` stays; anything else raises a ValueError naming the value."""
    if isinstance(grid, bool):
        raise ValueError(f"grid must be an int or a pair of ints, got {grid!r}")
    if isinstance(grid, int):
        grid = (grid, grid)
    if not isinstance(grid, (list, tuple)) or len(grid) != 2 or not all(isinstance(g, int) for g in grid):
        raise ValueError(f"grid must be an int or a pair of ints (n_h, n_w), got {grid!r}")
    if min(grid) < 1:
        raise ValueError(f"grid sizes must be >= 1, got {tuple(grid)}")
    return (int(grid[0]), int(grid[1]))
