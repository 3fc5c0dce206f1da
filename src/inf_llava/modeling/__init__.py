from .cropping import global_crops, local_crops, merge_global, merge_local
from .enhancement import DualPerspectiveEnhancement, WindowCrossAttention
from .image_encoder import InfLlavaImageEncoder
from .inf_llava import InfLlavaForConditionalGeneration, InfLlavaModel, InfLlavaPreTrainedModel
from .projector import build_projector

__all__ = [
    "DualPerspectiveEnhancement",
    "InfLlavaForConditionalGeneration",
    "InfLlavaImageEncoder",
    "InfLlavaModel",
    "InfLlavaPreTrainedModel",
    "WindowCrossAttention",
    "build_projector",
    "global_crops",
    "local_crops",
    "merge_global",
    "merge_local",
]
