"""Small side-by-side models for the LLM-side benchmarks: INF-LLaVA, HF LLaVA-NeXT (AnyRes) and HF LLaVA, all on the
same small Llama (shared weights) and a CLIP tower with the official view and patch size (narrow, so vision stays
cheap)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import CLIPVisionConfig, LlamaConfig

from ..configuration import CLIP_L14_336, InfLlavaConfig
from ..modeling.inf_llava import InfLlavaForConditionalGeneration
from ..presets import build_tiny_tokenizer, processor_for


@dataclass(frozen=True)
class BenchSizes:
    """The shared LLM and the (narrow) tower with the official view geometry."""

    llm_width: int = 512
    llm_layers: int = 8
    llm_heads: int = 8
    llm_intermediate: int = 1536
    tower_width: int = 64
    tower_layers: int = 3


def vision_config(sizes: BenchSizes) -> CLIPVisionConfig:
    return CLIPVisionConfig(
        hidden_size=sizes.tower_width,
        intermediate_size=4 * sizes.tower_width,
        num_hidden_layers=sizes.tower_layers,
        num_attention_heads=4,
        image_size=CLIP_L14_336["image_size"],
        patch_size=CLIP_L14_336["patch_size"],
    )


def text_config(sizes: BenchSizes, vocab_size: int) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=sizes.llm_width,
        intermediate_size=sizes.llm_intermediate,
        num_hidden_layers=sizes.llm_layers,
        num_attention_heads=sizes.llm_heads,
        num_key_value_heads=sizes.llm_heads,
        vocab_size=vocab_size,
        max_position_embeddings=8192,
    )


def build_models(
    sizes: BenchSizes = BenchSizes(), seed: int = 0, device: str = "cpu", dtype: torch.dtype = torch.float32
):
    """``(tokenizer, ours, our_processor, next_model, next_processor, llava_model, llava_processor)`` sharing LLM and
    tower weights, on ``device`` in ``dtype``. The tokenizer gains an ``<image>`` token for the HF models'
    placeholders."""
    from transformers import (
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
        LlavaProcessor,
    )
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]}, replace_extra_special_tokens=False)
    hf_image_token = tokenizer.convert_tokens_to_ids("<image>")
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    config = InfLlavaConfig(
        vision_config=vision_config(sizes),
        text_config=text_config(sizes, vocab),
        dem_num_heads=4,
        image_token_id=tokenizer.convert_tokens_to_ids("<|reserved_special_token_0|>"),
    )
    ours = InfLlavaForConditionalGeneration(config).eval()
    ours_processor = processor_for(config, tokenizer)

    common = dict(
        vision_config=copy.deepcopy(config.vision_config),
        text_config=copy.deepcopy(config.text_config),
        image_token_index=hf_image_token,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    nxt = LlavaNextForConditionalGeneration(LlavaNextConfig(**common)).eval()
    llava = LlavaForConditionalGeneration(LlavaConfig(**common)).eval()
    for model in (nxt, llava):
        model.model.language_model.load_state_dict(ours.model.language_model.state_dict())
        model.lm_head.load_state_dict(ours.lm_head.state_dict())
        model.model.vision_tower.load_state_dict(ours.model.image_encoder.vision_tower.state_dict(), strict=False)
    side = config.geometry.view_size
    clip_kwargs = dict(size={"shortest_edge": side}, crop_size={"height": side, "width": side})
    next_processor = LlavaNextProcessor(
        image_processor=LlavaNextImageProcessorPil(**clip_kwargs),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )
    llava_processor = LlavaProcessor(
        image_processor=LlavaImageProcessorPil(**clip_kwargs),
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, dropped by the "default" strategy
    )
    ours, nxt, llava = (model.to(device, dtype) for model in (ours, nxt, llava))
    return tokenizer, ours, ours_processor, nxt, next_processor, llava, llava_processor


def dynamic_variant(ours, tokenizer, max_views: int = 9):
    """``(model, processor)``: ``ours`` with ``grid="dynamic"`` (candidates within ``max_views``) and the same weights
    (the DEM's parameters do not depend on the grid)."""
    config = copy.deepcopy(ours.config)
    config.grid, config.max_views, config.grid_candidates = "dynamic", max_views, None
    config.validate_settings()
    parameter = next(ours.parameters())
    model = InfLlavaForConditionalGeneration(config).eval()
    model.load_state_dict(ours.state_dict())
    return model.to(parameter.device, parameter.dtype), processor_for(config, tokenizer)


def captured_inputs_embeds(model, inputs) -> torch.Tensor:
    """The ``inputs_embeds`` a multimodal model hands to its language model (image features spliced in)."""
    captured = {}
    hook = model.model.language_model.register_forward_pre_hook(
        lambda m, args, kwargs: captured.update(embeds=kwargs["inputs_embeds"]), with_kwargs=True
    )
    try:
        with torch.inference_mode():
            model(**inputs, logits_to_keep=1)
    finally:
        hook.remove()
    return captured["embeds"]
