"""Property-based tests (hypothesis) of the templates, the tokenisation with image slots and the image processor."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from inf_llava.presets import build_tiny_tokenizer, processor_for, tiny_config
from inf_llava.processing.templates import TEMPLATES
from inf_llava.processing.tokenization import IGNORE_INDEX

TOKENIZER = build_tiny_tokenizer()
PROCESSOR = processor_for(tiny_config(TOKENIZER), TOKENIZER)
SPECIALS = ("<image>", "<|", "|>", "</s>", "<s>", "<pad>")

text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=24
).filter(lambda s: s.strip() and not any(m in s for m in SPECIALS))


@st.composite
def conversations(draw):
    turns = draw(st.integers(1, 3))
    messages = []
    for index in range(turns):
        question = draw(text)
        if index == 0 and draw(st.booleans()):
            content = [{"type": "image"}, {"type": "text", "text": question}]
        else:
            content = question
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": draw(text)}]
    return messages


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=conversations(), template=st.sampled_from(["llama3", "vicuna_v1", "chatml"]))
def test_supervised_tokens_are_exactly_the_assistant_turns(messages, template):
    rendered = TEMPLATES[template].render(messages)
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    end = TEMPLATES[template].assistant_end
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == [a + end for a in answers]
    encoded = PROCESSOR.encode(rendered.text, rendered.assistant_spans)
    slots = sum(t == PROCESSOR.image_token_id for t in encoded.input_ids)
    assert slots == rendered.num_images * PROCESSOR.tokens_per_image
    turns, current = [], []
    for label in [*encoded.labels, IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            turns.append(TOKENIZER.decode(current))
            current = []
    assert len(turns) == len(answers)
    for turn, (a, b) in zip(turns, rendered.assistant_spans):
        extra = len(turn) - (b - a)
        assert extra >= 0 and turn[extra:] == rendered.text[a:b] and not turn[:extra].strip()


@settings(max_examples=40, deadline=None)
@given(
    width=st.integers(1, 300),
    height=st.integers(1, 300),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "1", "CMYK", "I;16", "F"]),
    pad=st.booleans(),
)
def test_image_processor_any_size_and_mode(width, height, mode, pad):
    image = Image.new(mode, (width, height))
    processor = PROCESSOR.image_processor
    processor_pad = processor.pad_to_square
    processor.pad_to_square = pad
    try:
        out = processor(image)["pixel_values"]
    finally:
        processor.pad_to_square = processor_pad
    assert out.shape == (1, 3, 72, 72)
    assert np.isfinite(out.numpy()).all()


@settings(max_examples=30, deadline=None)
@given(count=st.integers(0, 3), question=text)
def test_processor_slots_match_images(count, question):
    content = [{"type": "image"}] * count + [{"type": "text", "text": question}]
    prompt = PROCESSOR.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    images = [Image.new("RGB", (10 + i, 20)) for i in range(count)]
    inputs = PROCESSOR(images=images or None, text=prompt)
    assert int((inputs["input_ids"] == PROCESSOR.image_token_id).sum()) == count * PROCESSOR.tokens_per_image
    assert ("pixel_values" in inputs) == (count > 0)
