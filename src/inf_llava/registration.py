"""Registration of ``model_type="inf_llava"`` with the transformers Auto classes (idempotent)."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageTextToText,
    AutoProcessor,
)

from .configuration import InfLlavaConfig
from .modeling.inf_llava import InfLlavaForConditionalGeneration, InfLlavaModel
from .processing.image_processing import InfLlavaImageProcessor
from .processing.processor import InfLlavaProcessor


def register_auto_classes() -> None:
    AutoConfig.register(InfLlavaConfig.model_type, InfLlavaConfig, exist_ok=True)
    AutoModel.register(InfLlavaConfig, InfLlavaModel, exist_ok=True)
    AutoModelForImageTextToText.register(InfLlavaConfig, InfLlavaForConditionalGeneration, exist_ok=True)
    AutoImageProcessor.register(InfLlavaConfig, image_processor_classes={"pil": InfLlavaImageProcessor}, exist_ok=True)
    AutoProcessor.register(InfLlavaConfig, InfLlavaProcessor, exist_ok=True)
