"""Named model presets, built from configs without any download.

- ``tiny``: every unit test's model. A 3-layer ViT (width 32, 24-px views of 4-px patches, so ``p = 6`` and 36 image
  tokens), a 2-layer Llama (width 64) and a byte-level BPE tokenizer with Llama-3's special tokens, trained here on a
  fixed corpus. Forward + backward takes milliseconds on a CPU.
- ``inf-llava-llama3-8b``: the official architecture (CLIP-L/14-336 + Llama-3-8B, 3x3 grid), config only; weights come
  from ``inf-llava convert-official`` or ``inf-llava init``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from transformers import CLIPVisionConfig, LlamaConfig, PreTrainedTokenizerFast

from .configuration import CLIP_L14_336, InfLlavaConfig
from .processing.image_processing import InfLlavaImageProcessor
from .processing.processor import InfLlavaProcessor
from .processing.templates import LLAVA_SYSTEM

# Llama-3's special tokens (the image slots reuse a reserved one, as in converted checkpoints), plus the markers of
# the other templates so one tiny tokenizer serves all of them.
IMAGE_TOKEN = "<|reserved_special_token_0|>"
TINY_SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    IMAGE_TOKEN,
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<pad>",
    "<|im_start|>",
    "<|im_end|>",
    "<s>",
    "</s>",
)

_TINY_CORPUS = (
    LLAVA_SYSTEM,
    "You are a helpful assistant.",
    "system user assistant USER: ASSISTANT: What is this? Describe the image. What color is the shape?",
    "How many dots are there? Where is the object? Which letter is written in the top left corner?",
    "The image shows a red circle, a blue square and a green triangle on a white background.",
    "yes no left right top bottom center middle upper lower corner red green blue yellow black white gray",
    "one two three four five six seven eight nine ten zero 0 1 2 3 4 5 6 7 8 9 10 11 12",
    "a b c d e f g h i j k l m n o p q r s t u v w x y z A B C D E F G H I J K L M N O P Q R S T U V W X Y Z",
    "The answer is. It is a photo of a cat, a dog, a car, a tree, a house, a sign, text, number, letter.",
)


def build_tiny_tokenizer(vocab_size: int = 512, extra_corpus: Sequence[str] = ()) -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE tokenizer with Llama-3-style BOS handling and special tokens; ``extra_corpus``
    adds text to learn merges from (e.g. a task's vocabulary)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    backend.train_from_iterator([*_TINY_CORPUS, *extra_corpus] * 4, trainer=trainer)
    bos = "<|begin_of_text|>"
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, backend.token_to_id(bos))]
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token="<|eot_id|>",
        pad_token="<pad>",
        extra_special_tokens=[t for t in TINY_SPECIAL_TOKENS if t not in (bos, "<|eot_id|>", "<pad>")],
        model_max_length=2048,
        padding_side="left",
    )


def small_config(
    tokenizer: PreTrainedTokenizerFast,
    *,
    view_size: int = 24,
    patch_size: int = 4,
    vision_width: int = 32,
    vision_intermediate: int = 64,
    vision_layers: int = 3,
    vision_heads: int = 4,
    lm_width: int = 64,
    lm_intermediate: int = 128,
    lm_layers: int = 2,
    lm_heads: int = 4,
    lm_kv_heads: int = 2,
    max_positions: int = 2048,
    **settings: Any,
) -> InfLlavaConfig:
    """A from-scratch INF-LLaVA of the given sizes: CLIP-style ViT + Llama with ``tokenizer``'s vocabulary and special
    ids; ``settings`` go to :class:`InfLlavaConfig` (DEM heads default to the ViT's)."""
    vision = CLIPVisionConfig(
        hidden_size=vision_width,
        intermediate_size=vision_intermediate,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=view_size,
        patch_size=patch_size,
        projection_dim=vision_width,
    )
    text = LlamaConfig(
        hidden_size=lm_width,
        intermediate_size=lm_intermediate,
        num_hidden_layers=lm_layers,
        num_attention_heads=lm_heads,
        num_key_value_heads=lm_kv_heads,
        vocab_size=len(tokenizer),
        max_position_embeddings=max_positions,
        rope_theta=10000.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    settings = {"dem_num_heads": vision_heads, "image_token_id": image_token_id} | settings
    return InfLlavaConfig(vision_config=vision, text_config=text, **settings)


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> InfLlavaConfig:
    """The tiny preset: a 3-layer ViT (24-px views, 4-px patches) + a 2-layer Llama, widths 32 / 64."""
    return small_config(tokenizer, **overrides)


def official_config(**overrides: Any) -> InfLlavaConfig:
    """The released INF-LLaVA architecture (CLIP-L/14-336, Llama-3-8B with the added ``<pad>``: 128257 tokens)."""
    text = LlamaConfig(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128257,
        max_position_embeddings=8192,
        rope_theta=500000.0,
        rms_norm_eps=1e-5,
        bos_token_id=128000,
        eos_token_id=128009,
        pad_token_id=128256,
        tie_word_embeddings=False,
    )
    settings: dict[str, Any] = dict(image_token_id=128002)  # <|reserved_special_token_0|>
    settings.update(overrides)
    return InfLlavaConfig(vision_config=CLIPVisionConfig(**CLIP_L14_336), text_config=text, **settings)


def processor_for(config: InfLlavaConfig, tokenizer, template: str = "llama3", mode: str = "high_res", **kwargs: Any):
    """The processor matching ``config``'s geometry (``mode``: ``high_res`` training path or ``base`` inference
    path)."""
    image_processor = InfLlavaImageProcessor.for_geometry(config.geometry, mode=mode)
    image_token = tokenizer.convert_ids_to_tokens(config.image_token_id)
    return InfLlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        geometry=config.geometry.to_dict(),
        image_token=image_token,
        template=template,
        **kwargs,
    )


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    build_config: Callable[..., InfLlavaConfig]


PRESETS = MappingProxyType(
    {
        "tiny": Preset("tiny", "3-layer ViT + 2-layer Llama, built locally (tests, smoke runs)", tiny_config),
        "inf-llava-llama3-8b": Preset(
            "inf-llava-llama3-8b", "official INF-LLaVA architecture (CLIP-L/14-336 + Llama-3-8B)", official_config
        ),
    }
)


def build_tiny(seed: int = 0, template: str = "llama3", **overrides: Any):
    """``(model, processor)`` of the tiny preset, seeded."""
    import torch

    from .modeling.inf_llava import InfLlavaForConditionalGeneration

    tokenizer = build_tiny_tokenizer()
    config = tiny_config(tokenizer, **overrides)
    torch.manual_seed(seed)
    model = InfLlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids(t) for t in ("<|eot_id|>", "<|end_of_text|>")
    ]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor_for(config, tokenizer, template=template)
