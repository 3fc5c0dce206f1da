"""Image geometry of INF-LLaVA: grid, view size, patch grid and token counts, defined in one place.

Notation used across the package:

- ``n_h, n_w``: the DCM grid; ``K = n_h * n_w`` sub-images per perspective.
- ``S``: the vision tower's input size, one *view* (the tower config's ``image_size``).
- ``P``: the tower's patch size; ``p = S // P`` patches per view side.
- high-resolution image: ``(n_h * S, n_w * S)`` pixels, feature map ``(n_h * p, n_w * p)``.
- tokens per image fed to the LLM: ``p * p``, whatever the input resolution.

The official values follow from the official config (``presets.official_config().geometry``: the CLIP-L/14-336
tower of ``configuration.CLIP_L14_336`` and a 3x3 grid); ``tests/test_geometry.py`` checks them. Everything else (the
processor's output size, the model's view count, the number of image-token slots) is derived from
:class:`Geometry`, never written as a number."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Geometry:
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
    def patches_per_side(self) -> int:
        """Patch tokens along one side of a view, ``p = S // P``."""
        return self.view_size // self.patch_size

    @property
    def tokens_per_view(self) -> int:
        return self.patches_per_side**2

    @property
    def tokens_per_image(self) -> int:
        """Visual tokens one image contributes to the LLM (one view's worth, Eq. 7 of the paper)."""
        return self.tokens_per_view

    @property
    def high_res_size(self) -> tuple[int, int]:
        """(height, width) of the high-resolution image that DCM cuts into views."""
        return (self.grid_h * self.view_size, self.grid_w * self.view_size)

    @property
    def base_size(self) -> tuple[int, int]:
        """(height, width) of the low-resolution base view."""
        return (self.view_size, self.view_size)

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

    @classmethod
    def from_config(cls, config) -> Geometry:
        """Geometry of an :class:`~inf_llava.InfLlavaConfig` (grid from the config, view and patch size from its
        vision config)."""
        grid_h, grid_w = config.grid
        vision = config.vision_config
        image_size = vision.image_size
        if isinstance(image_size, (list, tuple)):
            if image_size[0] != image_size[1]:
                raise ValueError(f"vision towers with non-square inputs are not supported (image_size={image_size})")
            image_size = image_size[0]
        patch_size = vision.patch_size
        if isinstance(patch_size, (list, tuple)):
            patch_size = patch_size[0]
        return cls(grid_h=grid_h, grid_w=grid_w, view_size=int(image_size), patch_size=int(patch_size))

    def to_dict(self) -> dict[str, int]:
        return {
            "grid_h": self.grid_h,
            "grid_w": self.grid_w,
            "view_size": self.view_size,
            "patch_size": self.patch_size,
        }


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
