"""The vLLM model against this package's model on checkpoints other than the demo: a converted official-layout
checkpoint (Llama-3 tokenizer, CLIP 336/14 geometry: 576 image tokens, llama3 template with its double BOS) and
small random models with every non-default option of ``InfLlavaConfig`` (image side and tying), a Qwen2 LLM and a
SigLIP tower. Each compares prompt ids, the log-probabilities of every prompt token (they depend on the image
features through attention) and greedy answers."""

from __future__ import annotations

import math

import pytest
import torch
from conversion.official_fixture import FixtureSpec, write_official_checkpoint
from PIL import Image, ImageDraw
from transformers import Qwen2Config, SiglipVisionConfig
from vllm_helpers import close_llm, image_part, start_llm

from inf_llava import InfLlavaConfig, InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.presets import build_tiny_tokenizer, processor_for, small_config

pytestmark = pytest.mark.vllm

LOGPROB_ATOL = 2e-3  # fp32 on both sides; vLLM's fused CPU kernels round differently


def picture(seed: int, size=(90, 60)) -> Image.Image:
    image = Image.new("RGB", size, (seed * 40 % 256, 200, 30))
    draw = ImageDraw.Draw(image)
    draw.ellipse((5 + seed, 5, 40 + seed, 40), fill="red")
    draw.rectangle((50, 10 + seed, 85, 55), fill="blue")
    return image


def save_random_model(config: InfLlavaConfig, tokenizer, template: str, directory) -> None:
    torch.manual_seed(0)
    model = InfLlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # spread-out logits: greedy decoding has clear winners
        model.get_output_embeddings().weight.normal_(0, 0.5)
    processor = processor_for(config, tokenizer, template=template)
    model.generation_config.eos_token_id = processor.stop_token_ids()  # what vLLM stops at, as conversion writes
    model.save_pretrained(directory)
    processor.save_pretrained(directory)


def official_converted(root):
    """A released-layout checkpoint (tests/conversion/official_fixture.py) through ``plan_conversion``: 64-wide
    heads would be the fixture's default 16, which vLLM's CPU attention does not implement (it takes 32, 64, 80,
    ...; the released Llama-3-8B has 128), hence the 128-wide, 4-head LLM."""
    from inf_llava.conversion.convert import plan_conversion

    fixture = write_official_checkpoint(root / "src", spec=FixtureSpec(text_width=128, text_heads=4))
    return plan_conversion(fixture.path).save(root / "converted")


def llama_variant(tokenizer):
    """Every non-default image option at once, on a Llama: feature LayerNorm, average DEM pooling, additive
    low-resolution fusion, a non-square even grid (no centre pick: all views encoded), eager DEM attention, a
    linear projector, tied embeddings."""
    return small_config(
        tokenizer,
        lm_width=128,
        lm_heads=4,
        vision_feature_norm=True,
        dem_pooling="avg",
        low_res_fusion="add",
        grid=[2, 3],
        dem_attn_implementation="eager",
        projector_type="linear",
        tie_word_embeddings=True,
    ), "vicuna_v1"


def qwen2_variant(tokenizer):
    """A Qwen2 LLM (attention biases) behind a SigLIP tower, local tiles only plus the base view, mlp3x_gelu."""
    base = small_config(tokenizer, lm_width=128, lm_heads=4)
    text = Qwen2Config(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=24, patch_size=4
    )
    config = InfLlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=base.image_token_id,
        dem_num_heads=4,
        perspectives="local",
        projector_type="mlp3x_gelu",
    )
    return config, "chatml"


def ablation_variant(tokenizer):
    """Both perspectives added without the DEM (the paper's ablation), odd 3x3 grid."""
    return small_config(tokenizer, lm_width=128, lm_heads=4, perspective_fusion="add"), "llama3"


def low_res_only_variant(tokenizer):
    """LLaVA-1.5 style: the low-resolution view alone."""
    return small_config(tokenizer, lm_width=128, lm_heads=4, perspectives="none"), "llama3"


def dynamic_grid_variant(tokenizer):
    """Dynamic DCM grids (per-image grid from the aspect ratio, up to 6 tiles): mixed grids in one batch."""
    return small_config(tokenizer, lm_width=128, lm_heads=4, grid="dynamic", max_views=6), "llama3"


VARIANTS = {
    "official_converted": None,
    "dynamic_grids": dynamic_grid_variant,
    "llama_all_options": llama_variant,
    "qwen2_siglip_local": qwen2_variant,
    "both_added_no_dem": ablation_variant,
    "low_res_only": low_res_only_variant,
}


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request, tmp_path_factory):
    if VARIANTS[request.param] is None:
        directory = official_converted(tmp_path_factory.mktemp("official"))
    else:
        tokenizer = build_tiny_tokenizer()
        config, template = VARIANTS[request.param](tokenizer)
        directory = tmp_path_factory.mktemp(request.param)
        save_random_model(config, tokenizer, template, directory)
    model = InfLlavaForConditionalGeneration.from_pretrained(directory, dtype=torch.float32).eval()
    processor = InfLlavaProcessor.from_pretrained(directory)
    llm = start_llm(directory, "fp32", limit_mm_per_prompt={"image": 2}, max_model_len=2048)
    yield request.param, model, processor, llm
    close_llm(llm)


def our_logprobs(model, processor, ids, images) -> list[float]:
    """log p(token t | tokens < t) for t >= 1, with the image token's logit removed (as both engines decode)."""
    image_inputs = processor.image_processor(images, return_tensors="pt")  # + image_grids for dynamic grids
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids]), **image_inputs).logits[0].float()
    logits[:, processor.image_token_id] = -math.inf
    logprobs = torch.log_softmax(logits, -1)
    return [logprobs[t - 1, ids[t]].item() for t in range(1, len(ids))]


@pytest.mark.parametrize("count", [1, 2])
def test_prompt_ids_logprobs_and_greedy_answers_equal_ours(variant, count):
    from vllm import SamplingParams

    name, model, processor, llm = variant
    images = [picture(i, size=((90, 60), (40, 100))[i]) for i in range(count)]  # a wide image, then a tall one
    text = "What is in the picture?"
    messages = [{"role": "user", "content": [*map(image_part, images), {"type": "text", "text": text}]}]
    ours_messages = [
        {"role": "user", "content": [*({"type": "image"} for _ in images), {"type": "text", "text": text}]}
    ]
    params = SamplingParams(temperature=0.0, max_tokens=8, prompt_logprobs=0)
    output = llm.chat(messages, params)[0]
    ids = processor.encode(processor.apply_chat_template(ours_messages, add_generation_prompt=True)).input_ids
    assert list(output.prompt_token_ids) == ids, name
    assert ids.count(processor.image_token_id) == count * model.config.geometry.tokens_per_image
    if name == "official_converted":  # the released layout: the double BOS and (336 / 14) ** 2 slots per image
        assert ids[:2] == [128000, 128000] and ids.count(128002) == 576 * count
    if name == "dynamic_grids":  # each image got the grid of its own aspect ratio: here (2, 3) wide, (3, 2) tall
        grids = processor.image_processor(images, return_tensors="pt")["image_grids"].tolist()
        assert grids == [[2, 3], [3, 2]][:count], grids
    theirs = [entry[token].logprob for entry, token in zip(output.prompt_logprobs[1:], ids[1:])]
    expected = our_logprobs(model, processor, ids, images)
    image_id = processor.image_token_id
    pairs = [(a, b) for a, b, token in zip(theirs, expected, ids[1:]) if token != image_id]  # slots: -inf both
    worst = max(abs(a - b) for a, b in pairs)
    assert worst < LOGPROB_ATOL, f"{name}: prompt log-probabilities differ by up to {worst:.2e}"
    # Greedy answers: token for token.
    inputs = processor(images=images, text=processor.apply_chat_template(ours_messages, add_generation_prompt=True))
    stop = processor.stop_token_ids()
    with torch.no_grad():
        generated = model.generate(
            **inputs, max_new_tokens=8, do_sample=False, eos_token_id=stop, suppress_tokens=[image_id]
        )[0, len(ids) :].tolist()
    kept = []
    for token in generated:
        if token in stop:
            break
        kept.append(token)
    # Token for token (random weights answer in byte soup, whose text vLLM's incremental detokenizer may end
    # differently at the length limit: it holds back an incomplete UTF-8 character).
    assert list(output.outputs[0].token_ids)[: len(kept)] == kept, name
