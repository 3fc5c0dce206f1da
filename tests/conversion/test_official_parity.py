"""Converted checkpoints against a from-spec reference of the official inference (tests/reference/official_llava.py),
through the API a user calls: ``from_pretrained(DST)``, ``apply_chat_template``, ``processor(...)``,
``get_image_features``, ``model(**inputs).logits``, ``generate(max_new_tokens=12, do_sample=False)``."""

import functools

import pytest
import torch
from conftest import random_image
from conversion.official_fixture import checkpoint, loaded, planned
from reference.official_llava import (
    IMAGE_TOKEN_INDEX,
    OfficialLlava,
    official_pixels,
    official_prompt,
    tokenizer_image_token,
)
from transformers import AutoTokenizer, LlamaConfig

from inf_llava import InfLlavaForConditionalGeneration
from inf_llava.conversion.convert import plan_conversion

QUESTION = "What is shown in this image?"
MESSAGES = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
# spec 9.1, printed by executing the official template ("\n" are newline characters)
SPEC_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nA chat between a curious user and an artificial "
    "intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."
    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n<image>\nWhat is this?<|eot_id|><|start_header_id|>"
    "assistant<|end_header_id|>\n\n"
)
EOS = [128001, 128009]


def relative_error(ours: torch.Tensor, reference: torch.Tensor) -> float:
    """max |ours - reference| / max |reference|."""
    return (torch.sub(ours, reference).abs_().max() / reference.abs().max()).item()


@functools.cache
def reference_model(variant: str) -> OfficialLlava:
    fixture = checkpoint(variant)
    return OfficialLlava(fixture.weights, fixture.config, fixture.spec.vision_config())


@functools.cache
def source_tokenizer():
    """The source checkpoint's own tokenizer, loaded as the official code does (not the converted copy)."""
    return AutoTokenizer.from_pretrained(checkpoint("sharded").path, config=LlamaConfig())


def official_ids(prompt: str) -> list[int]:
    return tokenizer_image_token(prompt, source_tokenizer())


def expand(ids: list[int], image_token_id: int, slots: int) -> list[int]:
    out = []
    for token in ids:
        out.extend([image_token_id] * slots if token == IMAGE_TOKEN_INDEX else [token])
    return out


def test_prompt_is_byte_exact_and_ids_are_the_official_ones_with_real_llama3_ids():
    model, processor = loaded()
    prompt = processor.apply_chat_template(MESSAGES, add_generation_prompt=True)
    assert prompt == official_prompt(QUESTION)
    what_is_this = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    assert processor.apply_chat_template(what_is_this, add_generation_prompt=True) == SPEC_PROMPT
    reference = official_ids(prompt)
    # The real Llama-3 ids of spec 10.1, and the double BOS of spec 10.2.
    assert reference[:6] == [128000, 128000, 128006, 9125, 128007, 271]
    assert reference.count(IMAGE_TOKEN_INDEX) == 1 and reference[-5:] == [128009, 128006, 78191, 128007, 271]
    assert reference[reference.index(IMAGE_TOKEN_INDEX) - 5 :][:5] == [128009, 128006, 882, 128007, 271]
    ids = processor(images=[random_image(0)], text=prompt, return_tensors="pt")["input_ids"][0].tolist()
    assert model.config.image_token_id == processor.image_token_id == 128002
    assert ids == expand(reference, 128002, 576)


@pytest.mark.parametrize("size", [(640, 480), (333, 517), (1008, 1008)])
def test_pixel_values_follow_the_official_training_path(size):
    _, processor = loaded()
    image = random_image(sum(size), size)
    ours = processor(images=[image], text="<image>", return_tensors="pt")["pixel_values"]
    reference = official_pixels(image, scale=3)
    assert ours.shape == reference.shape == (1, 3, 1008, 1008)
    assert (ours - reference).abs().max().item() <= 1e-6


def _check_full_parity(model, processor, reference: OfficialLlava, image, reference_pixels, greedy: bool = True):
    prompt = processor.apply_chat_template(MESSAGES, add_generation_prompt=True)
    inputs = processor(images=[image], text=prompt, return_tensors="pt")
    assert torch.allclose(inputs["pixel_values"], reference_pixels, atol=1e-6, rtol=0)
    ids = official_ids(prompt)
    with torch.no_grad():
        outputs = model(**inputs)
    features, logits = outputs.image_features, outputs.logits  # what get_image_features(pixel_values) returns
    reference_features = reference.encode_images(reference_pixels)
    assert features.shape == reference_features.shape == (1, 576, model.config.text_config.hidden_size)
    assert relative_error(features, reference_features) <= 1e-4
    reference_logits = reference.logits(ids, reference_features)
    assert logits.shape == reference_logits.shape == (1, len(ids) - 1 + 576, 128257)
    assert relative_error(logits, reference_logits) <= 1e-4
    if not greedy:
        return
    generated = model.generate(**inputs, max_new_tokens=12, do_sample=False)[0, inputs["input_ids"].shape[1] :]
    tokens, margins = reference.greedy(ids, reference_features, 12, EOS)
    assert len(tokens) == 12 and min(margins) > 1e-3  # clear winners: the comparison below means something
    assert generated.tolist() == tokens


def test_features_logits_and_greedy_tokens_match_the_official_forward():
    model, processor = loaded()
    assert model.dtype == torch.float32  # the default, although the checkpoint is bf16
    image = random_image(11, (700, 420))
    _check_full_parity(model, processor, reference_model("sharded"), image, official_pixels(image, scale=3))


def test_base_mode_reproduces_the_official_inference_path():
    """Stock 336 processing, then the in-model bicubic upsample to 1008 (what the official eval scripts run)."""
    model, processor = loaded("sharded", "base")
    assert processor.image_processor.size == {"height": 336, "width": 336}
    image = random_image(12, (500, 640))
    pixels = official_pixels(image, scale=1)
    _check_full_parity(model, processor, reference_model("sharded"), image, pixels, greedy=False)


def test_tower_from_the_clip_repository_matches():
    model, processor = loaded("tower")
    image = random_image(13, (320, 240))
    pixels = official_pixels(image, scale=3)
    with torch.no_grad():
        features = model.get_image_features(processor(images=[image], text="<image>")["pixel_values"])
    assert relative_error(features, reference_model("tower").encode_images(pixels)) <= 1e-4


def test_embedded_copies_yield_to_the_tower_repository_as_in_the_official_loader():
    """The release embeds bf16 copies of CLIP, but the official loader reads CLIP's own fp32 weights: with both
    available, ``auto`` follows the official loader (the bf16 copies would be off by more than the tolerance)."""
    fixture = checkpoint("both")
    plan = planned("both")
    assert f"vision tower weights: {fixture.clip_path} (as the official loader; the embedded copies are not used)" in (
        plan.summary()
    )
    image = random_image(14, (400, 300))
    pixels = official_pixels(image, scale=3)
    expected = reference_model("both").encode_images(pixels)
    copies = plan_conversion(fixture.path, vision_weights="checkpoint")
    assert "vision tower weights: the checkpoint's embedded copy" in copies.summary()
    with torch.no_grad():
        ours = InfLlavaForConditionalGeneration.from_pretrained(None, config=plan.config, state_dict=plan.state_dict())
        with_copies = InfLlavaForConditionalGeneration.from_pretrained(
            None, config=copies.config, state_dict=copies.state_dict()
        )
        features = ours.get_image_features(plan.processor(images=[image], text="<image>")["pixel_values"])
        copy_features = with_copies.get_image_features(pixels)
    assert relative_error(features, expected) <= 1e-4
    assert relative_error(copy_features, expected) > 1e-4
