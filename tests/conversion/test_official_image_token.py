"""The image token for tokenizers without Llama-3's reserved tokens: the added ``<pad>`` (batches then pad with EOS,
so padding never becomes an image slot), else a new token with one zero row that generation suppresses. Either way
the released vocabulary's logits stay the official ones."""

import functools

import torch
from conftest import random_image
from conversion.official_fixture import scratch_directory, write_official_checkpoint
from reference.official_llava import OfficialLlava, tokenizer_image_token

from inf_llava import InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.conversion.convert import plan_conversion


@functools.cache
def fixture_and_conversion(tokenizer: str):
    fixture = write_official_checkpoint(
        scratch_directory() / "src" / f"tok-{tokenizer}", layout="single", tokenizer=tokenizer
    )
    plan = plan_conversion(fixture.path)
    destination = plan.save(scratch_directory() / "dst" / f"tok-{tokenizer}")
    return fixture, plan, destination


def _prompts(processor, questions):
    return [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True
        )
        for q in questions
    ]


def test_pad_token_as_image_token_keeps_padding_apart():
    fixture, plan, destination = fixture_and_conversion("no_reserved")
    vocab = fixture.config["vocab_size"]
    model = InfLlavaForConditionalGeneration.from_pretrained(destination)
    processor = InfLlavaProcessor.from_pretrained(destination)
    pad = processor.tokenizer.convert_tokens_to_ids("<pad>")
    eot = processor.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert model.config.image_token_id == processor.image_token_id == pad == vocab - 1
    assert model.config.text_config.vocab_size == vocab  # unchanged
    assert processor.pad_token_id == eot != pad and model.generation_config.pad_token_id == 128001
    assert any(
        line.startswith("image token: <pad>") and "vocabulary and logits unchanged" in line for line in plan.summary()
    )
    images = [random_image(1, (50, 40)), random_image(2, (40, 70))]
    batch = processor(images=images, text=_prompts(processor, ["Hi", "A much longer question here?"]))
    assert (batch["attention_mask"][0] == 0).any()  # left padding present, with the EOS id, not image slots
    assert int((batch["input_ids"] == pad).sum()) == 2 * 576 and (batch["input_ids"][0][:2] == eot).all()
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()  # image slots and features agree despite the padding


def test_added_token_as_last_resort_leaves_the_released_logits_alone():
    fixture, plan, destination = fixture_and_conversion("bare")
    vocab = fixture.config["vocab_size"]
    model = InfLlavaForConditionalGeneration.from_pretrained(destination)
    processor = InfLlavaProcessor.from_pretrained(destination)
    assert model.config.image_token_id == processor.image_token_id == vocab
    assert model.config.text_config.vocab_size == vocab + 1 and len(processor.tokenizer) == vocab + 1
    assert any("a new token" in line and "one embedding row added" in line for line in plan.summary())
    assert torch.equal(model.lm_head.weight[-1], torch.zeros_like(model.lm_head.weight[-1]))
    assert model.generation_config.suppress_tokens == [vocab]
    text = processor.apply_chat_template([{"role": "user", "content": "Hello there"}], add_generation_prompt=True)
    inputs = processor(text=text)
    reference = OfficialLlava(fixture.weights, fixture.config, fixture.spec.vision_config())
    with torch.no_grad():
        logits = model(**inputs).logits
        expected = reference.llm(input_ids=torch.tensor([tokenizer_image_token(text, processor.tokenizer)])).logits
    assert logits.shape[-1] == vocab + 1
    assert ((logits[..., :vocab] - expected).abs().max() / expected.abs().max()).item() <= 1e-4
    assert torch.equal(logits[..., vocab], torch.zeros_like(logits[..., vocab]))
    image_inputs = processor(images=[random_image(3, (64, 64))], text=_prompts(processor, ["What is this?"])[0])
    assert int((image_inputs["input_ids"] == vocab).sum()) == 576
    with torch.no_grad():
        assert torch.isfinite(model(**image_inputs).logits).all()
    generated = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert vocab not in generated[0, inputs["input_ids"].shape[1] :].tolist()
