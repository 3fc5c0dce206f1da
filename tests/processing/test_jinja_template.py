"""The Jinja form of the named templates (``InfLlavaProcessor.chat_template``, what vLLM renders chat requests with)
against the templates themselves: the same text, and tokenized without special tokens the same ids as the
processor's own tokenization (each image one token there, ``tokens_per_image`` slots here)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inf_llava.presets import build_tiny
from inf_llava.processing.processor import InfLlavaProcessor
from inf_llava.processing.templates import IMAGE_PLACEHOLDER, TEMPLATES

IMAGE = {"type": "image"}


@pytest.fixture(scope="module")
def tiny_processor():
    return build_tiny(seed=0)[1]


def with_template(processor, name, system_prompt=None):
    return InfLlavaProcessor(
        processor.image_processor,
        processor.tokenizer,
        geometry=processor.geometry,
        image_token=processor.image_token,
        template=name,
        system_prompt=system_prompt,
    )


def jinja_render(processor, messages, add_generation_prompt=True):
    return processor.tokenizer.apply_chat_template(
        messages, chat_template=processor.chat_template, add_generation_prompt=add_generation_prompt, tokenize=False
    )


def expected_text(processor, messages, add_generation_prompt=True):
    text = processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt)
    return processor.tokenizer.bos_token + text.replace(IMAGE_PLACEHOLDER, processor.image_token)


def collapsed_ids(processor, text):
    """The processor's ids with each image's slot run collapsed to one image token."""
    ids, out, n = processor.encode(text).input_ids, [], processor.tokens_per_image
    i = 0
    while i < len(ids):
        out.append(ids[i])
        i += n if ids[i] == processor.image_token_id else 1
    return out


CONVERSATIONS = [
    [{"role": "user", "content": [IMAGE, {"type": "text", "text": "What is this?"}]}],
    [{"role": "user", "content": "<image>\nWhat is this?"}],  # vLLM's "string" content format
    [{"role": "user", "content": "What is this? <image>"}],
    [{"role": "user", "content": "  no image, spaces kept  "}],
    [{"role": "user", "content": [IMAGE, IMAGE, {"type": "text", "text": "Compare."}, {"type": "text", "text": "Go"}]}],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": [IMAGE, {"type": "text", "text": " Where is the red box? "}]},
        {"role": "assistant", "content": "Left."},
        {"role": "user", "content": [{"type": "text", "text": "And the blue one?"}]},
    ],
    [{"role": "system", "content": [{"type": "text", "text": "sys"}]}, {"role": "user", "content": 'héllo ✓ "q" \\'}],
]


@pytest.mark.parametrize("name", sorted(TEMPLATES))
@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_jinja_renders_the_named_template(tiny_processor, name, index):
    processor = with_template(tiny_processor, name)
    messages = CONVERSATIONS[index]
    text = jinja_render(processor, messages)
    assert text == expected_text(processor, messages)
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == collapsed_ids(processor, processor.apply_chat_template(messages, add_generation_prompt=True))


def test_official_llama3_prompt_keeps_the_double_bos(tiny_processor):
    processor = with_template(tiny_processor, "llama3")
    text = jinja_render(processor, CONVERSATIONS[0])
    assert text.startswith("<|begin_of_text|><|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n")
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    bos = processor.tokenizer.bos_token_id
    assert ids[:2] == [bos, bos] and ids.count(processor.image_token_id) == 1


def test_system_prompt_of_the_processor_wins(tiny_processor):
    processor = with_template(tiny_processor, "chatml", system_prompt="Fixed.")
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "hi"}]
    assert jinja_render(processor, messages) == expected_text(processor, messages)
    assert "<|im_start|>system\nFixed.<|im_end|>" in jinja_render(processor, messages)


def test_training_conversation_without_generation_prompt(tiny_processor):
    processor = with_template(tiny_processor, "llama3")
    messages = CONVERSATIONS[5][:3]
    assert jinja_render(processor, messages, False) == expected_text(processor, messages, False)


@pytest.mark.parametrize(
    "messages, error",
    [
        ([{"role": "assistant", "content": "x"}], "expected a user turn"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "turns must alternate"),
        ([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}], "only allowed first"),
        ([{"role": "tool", "content": "a"}], "unknown role tool"),
        ([{"role": "user", "content": [{"type": "audio"}]}], "unknown content part audio"),
    ],
)
def test_invalid_conversations_are_refused_like_the_template(tiny_processor, messages, error):
    processor = with_template(tiny_processor, "llama3")
    with pytest.raises(ValueError):
        processor.apply_chat_template(messages, add_generation_prompt=True)
    with pytest.raises(Exception, match=error):
        jinja_render(processor, messages)


def test_a_saved_or_given_jinja_template_does_not_replace_the_named_one(tiny_processor, tmp_path):
    processor = with_template(tiny_processor, "chatml")
    processor.chat_template = "{{ 'something else' }}"
    assert "<|im_start|>" in processor.chat_template
    processor.save_pretrained(tmp_path)
    loaded = InfLlavaProcessor.from_pretrained(tmp_path)
    assert loaded.chat_template == processor.chat_template


TEXT = st.text(alphabet=st.sampled_from(list("ab <>image\n\t é✓.")), max_size=24)
PART = st.one_of(st.just(IMAGE), TEXT.map(lambda t: {"type": "text", "text": t}))
CONTENT = st.one_of(TEXT, st.lists(PART, max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(["llama3", "chatml", "vicuna_v1"]),
    turns=st.lists(CONTENT, min_size=1, max_size=5).filter(lambda t: len(t) % 2 == 1),
)
def test_random_conversations_render_alike(tiny_processor, name, turns):
    processor = with_template(tiny_processor, name)
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(turns)]
    try:
        expected = expected_text(processor, messages)
    except ValueError:  # e.g. an image in an assistant turn: both refuse
        with pytest.raises(Exception):  # noqa: B017 - jinja2 raises TemplateError
            jinja_render(processor, messages)
        return
    text = jinja_render(processor, messages)
    assert text == expected
    ids = processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert ids == collapsed_ids(processor, processor.apply_chat_template(messages, add_generation_prompt=True))
