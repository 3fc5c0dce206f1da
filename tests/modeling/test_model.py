import pytest
import torch
from conftest import random_image
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from inf_llava import InfLlavaConfig, InfLlavaForConditionalGeneration, InfLlavaProcessor
from inf_llava.inference import InfLlavaEngine


def _inputs(processor, images, questions):
    engine_prompts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
            add_generation_prompt=True,
        )
        for q in questions
    ]
    return processor(images=images, text=engine_prompts, return_tensors="pt")


def test_forward_shapes_and_loss(tiny_model, tiny_processor, images):
    inputs = _inputs(tiny_processor, images[:2], ["What is this?", "Describe the image."])
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    out = tiny_model(**inputs, labels=labels)
    assert out.logits.shape == (*inputs["input_ids"].shape, tiny_model.config.text_config.vocab_size)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.image_features.shape == (2, 36, 64)


def test_image_features_land_in_the_slots(tiny_model, tiny_processor, images):
    inputs = _inputs(tiny_processor, images[:1], ["What is this?"])
    captured = {}
    hook = tiny_model.language_model.register_forward_pre_hook(
        lambda m, a, kw: captured.update(embeds=kw["inputs_embeds"]), with_kwargs=True
    )
    with torch.no_grad():
        tiny_model(**inputs)
        features = tiny_model.get_image_features(inputs["pixel_values"])
    hook.remove()
    slots = inputs["input_ids"][0] == tiny_model.config.image_token_id
    assert int(slots.sum()) == 36
    assert torch.equal(captured["embeds"][0, slots], features[0])
    text_embeds = tiny_model.get_input_embeddings()(inputs["input_ids"][0, ~slots])
    assert torch.equal(captured["embeds"][0, ~slots], text_embeds)


def test_mismatch_between_slots_and_features_raises(tiny_model, tiny_processor, images):
    inputs = _inputs(tiny_processor, images[:1], ["What is this?"])
    with pytest.raises(
        ValueError, match="image features and image tokens do not match.*36 image-token slots.*2 images"
    ):
        tiny_model(input_ids=inputs["input_ids"], pixel_values=torch.cat([inputs["pixel_values"]] * 2))
    with pytest.raises(ValueError, match="do not match"):
        tiny_model(input_ids=inputs["input_ids"])  # slots but no image
    with pytest.raises(ValueError, match="0 image-token slots"):
        tiny_model(input_ids=torch.tensor([[20, 21, 22]]), pixel_values=inputs["pixel_values"])


def test_save_load_round_trip_is_bit_exact(tmp_path, tiny_model, tiny_processor, images):
    tiny_model.save_pretrained(tmp_path)
    tiny_processor.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    model = InfLlavaForConditionalGeneration.from_pretrained(tmp_path).eval()
    processor = InfLlavaProcessor.from_pretrained(tmp_path)
    a, b = tiny_model.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    volatile = {"_name_or_path", "dtype", "transformers_version"}
    strip = lambda d: {k: strip(v) if isinstance(v, dict) else v for k, v in d.items() if k not in volatile}  # noqa: E731
    assert strip(model.config.to_dict()) == strip(tiny_model.config.to_dict())
    x1 = _inputs(tiny_processor, images[:2], ["What is this?", "Count the dots."])
    x2 = _inputs(processor, images[:2], ["What is this?", "Count the dots."])
    assert x1.keys() == x2.keys() and all(torch.equal(x1[k], x2[k]) for k in x1)
    with torch.no_grad():
        assert torch.equal(tiny_model(**x1).logits, model(**x2).logits)
    # Auto classes resolve to ours
    assert isinstance(AutoConfig.from_pretrained(tmp_path), InfLlavaConfig)
    assert isinstance(AutoModelForImageTextToText.from_pretrained(tmp_path), InfLlavaForConditionalGeneration)
    assert isinstance(AutoProcessor.from_pretrained(tmp_path), InfLlavaProcessor)


def test_greedy_generation_with_cache_equals_without(tiny_model, tiny_processor, images):
    inputs = _inputs(tiny_processor, images[:1], ["What is this?"])
    kw = dict(max_new_tokens=10, do_sample=False, eos_token_id=None, min_new_tokens=10)
    with torch.no_grad():
        cached = tiny_model.generate(**inputs, use_cache=True, **kw)
        uncached = tiny_model.generate(**inputs, use_cache=False, **kw)
    assert cached.shape[1] == inputs["input_ids"].shape[1] + 10
    assert torch.equal(cached, uncached)


def test_batch_with_left_padding_equals_batch_of_one(tiny_model, tiny_processor, images):
    questions = ["What is this?", "How many dots are there in the picture?", "Describe.", "Where is it?"]
    kw = dict(max_new_tokens=8, do_sample=False, eos_token_id=None, min_new_tokens=8)
    batch = _inputs(tiny_processor, images, questions)
    assert (batch["attention_mask"][:, 0] == 0).any()  # left padding present
    with torch.no_grad():
        together = tiny_model.generate(**batch, **kw)[:, batch["input_ids"].shape[1] :]
        for i in range(4):
            single = _inputs(tiny_processor, images[i : i + 1], questions[i : i + 1])
            alone = tiny_model.generate(**single, **kw)[:, single["input_ids"].shape[1] :]
            assert torch.equal(alone[0], together[i]), f"row {i}"


def test_text_only_prompt(tiny_model, tiny_processor):
    prompt = tiny_processor.apply_chat_template([{"role": "user", "content": "Hello"}], add_generation_prompt=True)
    inputs = tiny_processor(text=prompt, return_tensors="pt")
    assert "pixel_values" not in inputs
    with torch.no_grad():
        assert tiny_model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_two_images_in_one_prompt(tiny_model, tiny_processor, images):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Diff?"}]}]
    prompt = tiny_processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = tiny_processor(images=images[:2], text=prompt)
    assert int((inputs["input_ids"] == tiny_processor.image_token_id).sum()) == 72
    with torch.no_grad():
        tiny_model(**inputs)


def test_forward_backward_reaches_every_trainable_part(tiny_model, tiny_processor, images):
    model = tiny_model.train()
    inputs = _inputs(tiny_processor, images[:2], ["What is this?", "Describe."])
    model(**inputs, labels=inputs["input_ids"]).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    # the tower's post-LayerNorm feeds only CLIP's pooled output, which INF-LLaVA never uses
    assert all("post_layernorm" in n for n in missing), missing


def test_engine_batch_equals_single(tiny_model, tiny_processor):
    engine = InfLlavaEngine(tiny_model, tiny_processor)
    imgs = [random_image(i, (30 + 11 * i, 70)) for i in range(3)]
    questions = ["What is this?", "How many dots?", "Where is the red one?"]
    together = engine.complete([engine.question(q) for q in questions], [[im] for im in imgs])
    for q, im, res in zip(questions, imgs, together):
        assert engine.complete([engine.question(q)], [[im]])[0].token_ids == res.token_ids
    streamed = "".join(engine.stream(engine.question(questions[0]), [imgs[0]]))
    assert streamed == together[0].text


def test_import_has_no_side_effects():
    import subprocess
    import sys

    code = (
        "import sys, inf_llava, torch; "
        "print(torch.cuda.is_initialized(), 'requests' in sys.modules and False, 'inf_llava.cli' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "False"]


def test_a_generated_image_token_does_not_break_decoding(tiny_model, tiny_processor, images):
    # Make the image token the most likely next token: greedy decoding must go on (it is only an embedding then).
    with torch.no_grad():
        tiny_model.lm_head.weight[tiny_model.config.image_token_id] += 50.0
    inputs = _inputs(tiny_processor, images[:2], ["What is this?", "Describe."])
    out = tiny_model.generate(**inputs, max_new_tokens=3, do_sample=False, eos_token_id=None)
    assert (out[:, -3:] == tiny_model.config.image_token_id).all()
    engine = InfLlavaEngine(tiny_model, tiny_processor)  # the engine never emits image slots
    completion = engine.complete([engine.question("Hi")], [[images[0]]])[0]
    assert tiny_model.config.image_token_id not in completion.token_ids
