from .image_processing import InfLlavaImageProcessor
from .processor import InfLlavaProcessor
from .templates import TEMPLATES, ChatTemplate, RenderedPrompt, get_template
from .tokenization import IGNORE_INDEX, EncodedPrompt, encode_prompt

__all__ = [
    "IGNORE_INDEX",
    "TEMPLATES",
    "ChatTemplate",
    "EncodedPrompt",
    "InfLlavaImageProcessor",
    "InfLlavaProcessor",
    "RenderedPrompt",
    "encode_prompt",
    "get_template",
]
