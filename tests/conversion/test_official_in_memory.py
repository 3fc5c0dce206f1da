"""``from_pretrained`` on an original ``llava_llama`` directory converts in memory; the default dtype is float32
(transformers 4.x convention) while explicit dtypes, ``"auto"`` included, behave as in HF."""

import logging

import torch
from conftest import random_image
from conversion.official_fixture import checkpoint, converted, loaded
from transformers import AutoModelForImageTextToText

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor

VOLATILE = {"_name_or_path", "dtype", "transformers_version"}


def _plain(config) -> dict:
    strip = lambda d: {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in VOLATILE}  # noqa: E731
    return strip(config.to_dict())


def test_original_directory_loads_in_memory_like_the_converted_copy(caplog):
    source = checkpoint("bin").path
    with caplog.at_level(logging.WARNING):
        model = InfLlavaForConditionalGeneration.from_pretrained(source)
    assert f"{source} is an original INF-LLaVA (llava_llama) checkpoint: converting it in memory" in caplog.text
    reference, converted_processor = loaded("sharded")
    assert model.dtype == reference.dtype == torch.float32
    ours, theirs = model.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert _plain(model.config) == _plain(reference.config)
    assert model.generation_config.eos_token_id == [128001, 128009] and not model.training

    processor = InfLlavaProcessor.from_pretrained(source)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe it."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = random_image(5, (90, 60))
    a = processor(images=[image], text=prompt)
    b = converted_processor(images=[image], text=prompt)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_default_dtype_is_float32_and_explicit_dtypes_behave_as_in_transformers():
    directory = converted("sharded")  # stored in bf16, config.dtype bfloat16
    assert InfLlavaForConditionalGeneration.from_pretrained(directory).dtype == torch.float32
    assert AutoModelForImageTextToText.from_pretrained(directory).dtype == torch.float32
    auto = InfLlavaForConditionalGeneration.from_pretrained(directory, dtype="auto")
    assert auto.dtype == torch.bfloat16 and auto.lm_head.weight.dtype == torch.bfloat16
    assert InfLlavaForConditionalGeneration.from_pretrained(directory, dtype=torch.float16).dtype == torch.float16
    in_memory = InfLlavaForConditionalGeneration.from_pretrained(checkpoint("single").path, dtype="auto")
    assert in_memory.dtype == torch.bfloat16
    assert torch.equal(in_memory.lm_head.weight, auto.lm_head.weight)
