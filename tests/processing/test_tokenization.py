import pytest

from inf_llava.processing.templates import TEMPLATES
from inf_llava.processing.tokenization import IGNORE_INDEX, encode_prompt

CONVERSATION = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
    {"role": "assistant", "content": "A red circle, top left."},
    {"role": "user", "content": "How many dots are there?"},
    {"role": "assistant", "content": "There are 7 dots.\nAll blue."},
    {"role": "user", "content": "Ünïcødé ✓ 日本語?"},
    {"role": "assistant", "content": "Yes — 日本語 works 🙂"},
]


def test_double_bos_and_image_expansion(tiny_processor):
    text = TEMPLATES["llama3"].render(CONVERSATION[:1], add_generation_prompt=True).text
    ids = tiny_processor.encode(text).input_ids
    tok = tiny_processor.tokenizer
    assert ids[:3] == [tok.bos_token_id, tok.bos_token_id, tok.convert_tokens_to_ids("<|start_header_id|>")]
    slots = [i for i, t in enumerate(ids) if t == tiny_processor.image_token_id]
    assert len(slots) == 36 and slots == list(range(slots[0], slots[0] + 36))
    # the official tokenizer_image_token: chunks tokenised separately, BOS kept once, -200 -> 36 slots
    before, after = text.split("<image>")
    official = tok(before).input_ids + [-200] + tok(after).input_ids[1:]
    expanded = [t for x in official for t in ([tiny_processor.image_token_id] * 36 if x == -200 else [x])]
    assert ids == expanded


def test_no_merge_across_the_image(tiny_processor):
    tok = tiny_processor.tokenizer
    ids = encode_prompt(tok, "ab<image>cd", image_token_id=tiny_processor.image_token_id, tokens_per_image=2).input_ids
    assert ids == [
        tok.bos_token_id,
        *tok("ab", add_special_tokens=False).input_ids,
        2,
        2,
        *tok("cd", add_special_tokens=False).input_ids,
    ]


@pytest.mark.parametrize("template", ["llama3", "vicuna_v1", "chatml", "plain"])
def test_supervised_tokens_decode_to_assistant_texts(tiny_processor, template):
    conversation = CONVERSATION[:2] if template == "plain" else CONVERSATION
    rendered = TEMPLATES[template].render(conversation)
    encoded = tiny_processor.encode(rendered.text, rendered.assistant_spans)
    assert len(encoded.labels) == len(encoded.input_ids)
    # group consecutive supervised tokens into turns and decode each
    turns, current = [], []
    for label in encoded.labels + [IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            turns.append(tiny_processor.tokenizer.decode(current))
            current = []
    assert len(turns) == len(rendered.assistant_spans)
    for turn, (a, b) in zip(turns, rendered.assistant_spans):
        # Exactly the assistant text and its end marker; a token that merges the header's trailing space with the
        # first word (" A" after "ASSISTANT:") is supervised whole, since that is what generation must produce.
        extra = len(turn) - (b - a)
        assert turn[extra:] == rendered.text[a:b]
        assert turn[:extra] == rendered.text[a - extra : a] and not turn[:extra].strip()
    assert all(
        label == IGNORE_INDEX
        for label, t in zip(encoded.labels, encoded.input_ids)
        if t == tiny_processor.image_token_id
    )


def test_llama3_supervision_matches_official_masking(tiny_processor):
    # Official preprocess_llama3: BOS, BOS, system, user turns, headers and image are ignored; answers + <|eot_id|>
    # are supervised.
    rendered = TEMPLATES["llama3"].render(CONVERSATION[:2])
    encoded = tiny_processor.encode(rendered.text, rendered.assistant_spans)
    tok = tiny_processor.tokenizer
    supervised = [t for t in encoded.labels if t != IGNORE_INDEX]
    assert supervised == tok("A red circle, top left.", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert encoded.input_ids[-len(supervised) :] == supervised


def test_image_token_in_text_is_refused(tiny_processor):
    with pytest.raises(ValueError, match="contains the image token"):
        tiny_processor.encode("look: <|reserved_special_token_0|>")
