"""Labels of real multi-turn samples, decoded: exactly the assistant texts and their end-of-turn markers."""

import json

import pytest
import torch
from conftest import random_image

from inf_llava.data import LlavaDataset, load_records
from inf_llava.data.dataset import InvalidExample
from inf_llava.errors import DataError
from inf_llava.processing.templates import TEMPLATES
from inf_llava.processing.tokenization import IGNORE_INDEX

ANSWERS = ["The shape is a red circle.", "Two: a circle and a square.", "It is in the top left corner."]
RECORD = {
    "id": "multi",
    "image": ["one.png", "two.png"],
    "conversations": [
        {"from": "human", "value": "<image>\nWhat is this?"},
        {"from": "gpt", "value": ANSWERS[0]},
        {"from": "human", "value": "How many shapes?\n<image>"},
        {"from": "gpt", "value": ANSWERS[1]},
        {"from": "human", "value": "Where is the circle?"},
        {"from": "gpt", "value": ANSWERS[2]},
    ],
}


@pytest.fixture()
def data(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    random_image(1, (40, 30)).save(folder / "one.png")
    random_image(2, (20, 50)).save(folder / "two.png")
    caption = {
        "id": "cap",
        "image": "one.png",
        "conversations": [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "A red circle."}],
    }
    text_only = {
        "id": "txt",
        "conversations": [{"from": "human", "value": "Say yes."}, {"from": "gpt", "value": "yes"}],
    }
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (RECORD, caption, text_only)))
    return path, folder


def _supervised_runs(labels: torch.Tensor) -> list[list[int]]:
    runs, current = [], []
    for label in labels.tolist():
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + ([current] if current else [])


@pytest.mark.parametrize("template", ["llama3", "vicuna_v1", "chatml"])
def test_supervised_tokens_decode_to_the_assistant_turns(tiny_processor, data, template):
    path, folder = data
    samples, _ = load_records(path, folder)
    example = LlavaDataset(samples, tiny_processor, template)[0]
    end = TEMPLATES[template].assistant_end
    runs = _supervised_runs(example.labels)
    decoded = [tiny_processor.tokenizer.decode(run) for run in runs]
    if TEMPLATES[template].assistant_header.endswith(" "):
        # "ASSISTANT: The": byte-level BPE attaches the header's space to the answer's first word, so that token
        # (" The") is supervised whole, as upstream LLaVA's vicuna masking also does.
        decoded = [text.removeprefix(" ") for text in decoded]
    assert decoded == [answer + end for answer in ANSWERS]
    # Supervised labels equal the input ids at their positions; image slots are never supervised.
    keep = example.labels != IGNORE_INDEX
    assert torch.equal(example.labels[keep], example.input_ids[keep])
    slots = example.input_ids == tiny_processor.image_token_id
    assert int(slots.sum()) == 2 * tiny_processor.tokens_per_image
    assert (example.labels[slots] == IGNORE_INDEX).all()
    assert example.pixel_values.shape == (2, 3, *tiny_processor.image_processor.size.values())


def test_plain_template_supervises_caption_and_newline(tiny_processor, data):
    path, folder = data
    samples, _ = load_records(path, folder, template="plain", skip_invalid=True)
    assert [s.sample_id for s in samples] == ["cap", "txt"]
    example = LlavaDataset(samples, tiny_processor, "plain")[0]
    ids = example.input_ids.tolist()
    # BOS, the image slots, then the caption: the human text is not part of a stage-1 sample (spec 10.4).
    assert ids[0] == tiny_processor.tokenizer.bos_token_id
    assert ids[1 : 1 + tiny_processor.tokens_per_image] == [tiny_processor.image_token_id] * 36
    assert tiny_processor.tokenizer.decode(ids[1 + tiny_processor.tokens_per_image :]) == "A red circle.\n"
    assert [tiny_processor.tokenizer.decode(r) for r in _supervised_runs(example.labels)] == ["A red circle.\n"]
    assert (example.labels[: 1 + tiny_processor.tokens_per_image] == IGNORE_INDEX).all()


def test_text_only_sample_has_no_pixels(tiny_processor, data):
    path, folder = data
    samples, _ = load_records(path, folder)
    example = LlavaDataset(samples, tiny_processor, "llama3")[2]
    assert example.pixel_values is None
    assert tiny_processor.image_token_id not in example.input_ids.tolist()
    assert [tiny_processor.tokenizer.decode(r) for r in _supervised_runs(example.labels)] == ["yes<|eot_id|>"]


def test_too_long_samples_are_errors_never_truncated(tiny_processor, data):
    path, folder = data
    samples, _ = load_records(path, folder)
    limit = len(LlavaDataset(samples, tiny_processor, "llama3")[2].input_ids)  # the text-only sample just fits
    with pytest.raises(DataError) as info:
        LlavaDataset(samples, tiny_processor, "llama3", max_length=limit)[0]
    message = str(info.value)
    assert message.startswith(f"{path} line 1 (sample 'multi'): ")
    assert f"over max_length {limit}" in message and "2 x 36 image slots" in message
    skipping = LlavaDataset(samples, tiny_processor, "llama3", max_length=limit, skip_invalid=True)
    invalid = skipping[0]
    assert isinstance(invalid, InvalidExample) and invalid.record.sample_id == "multi"
    assert len(skipping[2].input_ids) == limit


def test_corrupt_image_found_at_fetch_time_names_sample_and_file(tiny_processor, data):
    path, folder = data
    samples, _ = load_records(path, folder)
    (folder / "two.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DataError) as info:
        LlavaDataset(samples, tiny_processor, "llama3")[0]
    message = str(info.value)
    assert message.startswith(f"{path} line 1 (sample 'multi'): {folder / 'two.png'}: ")
    assert "\n" not in message
    assert LlavaDataset(samples, tiny_processor, "llama3")[1].pixel_values.shape[0] == 1


def test_text_containing_the_image_token_is_refused(tiny_processor, tmp_path):
    token = tiny_processor.tokenizer.convert_ids_to_tokens(tiny_processor.image_token_id)
    record = {
        "id": "sneaky",
        "conversations": [{"from": "human", "value": f"hi {token}"}, {"from": "gpt", "value": "a"}],
    }
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(record) + "\n")
    samples, _ = load_records(path, None)
    with pytest.raises(DataError, match="sample 'sneaky'.*contains the image token"):
        LlavaDataset(samples, tiny_processor, "llama3")[0]
