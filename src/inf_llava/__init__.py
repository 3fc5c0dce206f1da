"""INF-LLaVA: dual-perspective perception for high-resolution multimodal LLMs, as an HF-native package.

Public API: :class:`InfLlavaConfig`, :class:`InfLlavaForConditionalGeneration`, :class:`InfLlavaProcessor`,
:class:`InfLlavaImageProcessor`, the DCM functions (:func:`local_crops`, :func:`global_crops`, :func:`merge_local`,
:func:`merge_global`) and the DEM module (:class:`DualPerspectiveEnhancement`). Importing the package registers
``model_type="inf_llava"`` with the transformers Auto classes; it does no other work.
"""

from .configuration import InfLlavaConfig
from .geometry import DynamicGeometry, Geometry, select_grid
from .modeling import (
    DualPerspectiveEnhancement,
    InfLlavaForConditionalGeneration,
    InfLlavaModel,
    global_crops,
    local_crops,
    merge_global,
    merge_local,
)
from .processing import TEMPLATES, InfLlavaImageProcessor, InfLlavaProcessor
from .registration import register_auto_classes

__version__ = "0.1.0"

register_auto_classes()

__all__ = [
    "TEMPLATES",
    "DualPerspectiveEnhancement",
    "DynamicGeometry",
    "Geometry",
    "InfLlavaConfig",
    "InfLlavaForConditionalGeneration",
    "InfLlavaImageProcessor",
    "InfLlavaModel",
    "InfLlavaProcessor",
    "global_crops",
    "local_crops",
    "merge_global",
    "merge_local",
    "select_grid",
]
