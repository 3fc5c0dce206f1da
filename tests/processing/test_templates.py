import pytest

from inf_llava.processing.templates import TEMPLATES, get_template

# Spec 9.1: printed by executing the fork's template with "What is this?".
OFFICIAL_LLAMA3_PROMPT = (
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
    "<image>\nWhat is this?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
)

CONVERSATION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
    {"role": "assistant", "content": "A red circle."},
    {"role": "user", "content": "And the square?"},
    {"role": "assistant", "content": [{"type": "text", "text": "It is blue."}]},
]


def test_llama3_matches_official_prompt_byte_for_byte():
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    assert TEMPLATES["llama3"].render(messages, add_generation_prompt=True).text == OFFICIAL_LLAMA3_PROMPT
    # the same from a plain string with the placeholder anywhere (moved to the front, as preprocess_multimodal does)
    for content in ("<image>\nWhat is this?", "What is this?\n<image>", "What is this? <image>"):
        rendered = TEMPLATES["llama3"].render([{"role": "user", "content": content}], add_generation_prompt=True)
        assert rendered.text == OFFICIAL_LLAMA3_PROMPT


def test_llama3_training_conversation():
    rendered = TEMPLATES["llama3"].render(CONVERSATION)
    assert rendered.text.endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\nA red circle.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nAnd the square?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nIt is blue.<|eot_id|>"
    )
    assert [rendered.text[a:b] for a, b in rendered.assistant_spans] == [
        "A red circle.<|eot_id|>",
        "It is blue.<|eot_id|>",
    ]
    assert rendered.num_images == 1


def test_other_templates_exact_strings():
    system = TEMPLATES["vicuna_v1"].system
    vicuna = TEMPLATES["vicuna_v1"].render(CONVERSATION[:3], add_generation_prompt=True).text
    assert (
        vicuna == f"{system} USER: <image>\nWhat is this? ASSISTANT: A red circle.</s>USER: And the square? ASSISTANT:"
    )
    chatml = TEMPLATES["chatml"].render(CONVERSATION).text
    assert chatml == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\nA red circle.<|im_end|>\n"
        "<|im_start|>user\nAnd the square?<|im_end|>\n<|im_start|>assistant\nIt is blue.<|im_end|>\n"
    )
    plain = TEMPLATES["plain"].render(CONVERSATION[:2])
    assert plain.text == "<image>A red circle.\n"  # stage 1: the question text is dropped
    assert [plain.text[a:b] for a, b in plain.assistant_spans] == ["A red circle.\n"]
    assert TEMPLATES["plain"].render(CONVERSATION[:1], add_generation_prompt=True).text == "<image>"


def test_system_message_overrides_default():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    text = TEMPLATES["llama3"].render(messages, add_generation_prompt=True).text
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>")


def test_llava_data_format_is_accepted():
    messages = [{"from": "human", "value": "<image>\nWhat is this?"}, {"from": "gpt", "value": "A cat."}]
    assert TEMPLATES["llama3"].render(messages).text.endswith("\n\nA cat.<|eot_id|>")


@pytest.mark.parametrize(
    "messages,match",
    [
        ([{"role": "assistant", "content": "hi"}], "expected a user turn"),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "expected a assistant turn"),
        ([{"role": "robot", "content": "a"}], "unknown role 'robot'"),
        ([{"role": "user", "content": [{"type": "video"}]}], "unknown content part"),
        ([{"content": "x"}], "neither 'role' nor 'from'"),
        ("hello", "must be a list"),
    ],
)
def test_bad_conversations(messages, match):
    with pytest.raises(ValueError, match=match):
        TEMPLATES["llama3"].render(messages)


def test_generation_prompt_needs_user_turn_last():
    with pytest.raises(ValueError, match="end with a user turn"):
        TEMPLATES["llama3"].render(CONVERSATION, add_generation_prompt=True)


def test_unknown_template():
    with pytest.raises(ValueError, match="unknown template 'alpaca'"):
        get_template("alpaca")
