"""chat_template.jinja renders exactly what the processor's named template renders (tools that read only the
repository's Jinja template build the same prompt), and the processor saves it."""

import pytest

from inf_llava import InfLlavaProcessor
from inf_llava.processing.jinja_template import jinja_chat_template
from inf_llava.processing.templates import TEMPLATES

CONVERSATIONS = [
    [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "  What is it? "}]}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "<image>\nHi <image> there "},
        {"role": "assistant", "content": "A cat."},
        {"role": "user", "content": "And now?"},
    ],
    [{"role": "user", "content": "no image  "}, {"role": "assistant", "content": " ok "}],
    [
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}],
        }
    ],
    [{"role": "assistant", "content": "out of order"}],
]


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("system", [None, "You are terse."])
def test_jinja_equals_the_named_template(tiny_tokenizer, name, system):
    template = TEMPLATES[name]
    source = jinja_chat_template(name, system)
    compared = 0
    for conversation in CONVERSATIONS:
        for generation in (False, True):
            try:
                want = template.render(conversation, add_generation_prompt=generation, system=system).text
            except ValueError:
                want = None
            try:
                got = tiny_tokenizer.apply_chat_template(
                    conversation, chat_template=source, add_generation_prompt=generation, tokenize=False
                )
            except Exception:  # noqa: BLE001 - raise_exception() in the template: any error type
                got = None
            assert got == want, (name, conversation, generation)
            compared += want is not None
    assert compared >= 5


def test_processor_saves_its_template(tiny_processor, tmp_path):
    tiny_processor.save_pretrained(tmp_path)
    saved = (tmp_path / "chat_template.jinja").read_text()
    assert saved == jinja_chat_template(tiny_processor.template, tiny_processor.system_prompt)
    (tmp_path / "chat_template.jinja").write_text("{{ 'edited' }}")  # a hand-edited file cannot override `template`
    loaded = InfLlavaProcessor.from_pretrained(tmp_path)
    assert loaded.chat_template == saved
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    assert loaded.apply_chat_template(messages, add_generation_prompt=True) == tiny_processor.apply_chat_template(
        messages, add_generation_prompt=True
    )
