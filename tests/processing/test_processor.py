import numpy as np
import pytest
import torch
from conftest import random_image
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from inf_llava import InfLlavaImageProcessor, InfLlavaProcessor
from inf_llava.geometry import Geometry
from inf_llava.processing.image_processing import pad_color, pad_to_aspect


def test_pad_colour_is_truncated_clip_mean():
    assert pad_color((0.48145466, 0.4578275, 0.40821073)) == (122, 116, 104)


def test_expand2square_semantics():
    wide = Image.new("RGB", (10, 4), (255, 0, 0))
    out = pad_to_aspect(wide, 1, 1, (122, 116, 104))
    assert out.size == (10, 10)
    arr = np.asarray(out)
    assert (arr[:3] == (122, 116, 104)).all() and (arr[3:7] == (255, 0, 0)).all() and (arr[7:] == (122, 116, 104)).all()
    tall = Image.new("RGB", (3, 8), (0, 255, 0))
    arr = np.asarray(pad_to_aspect(tall, 1, 1, (1, 2, 3)))
    assert arr.shape == (8, 8, 3) and (arr[:, 2:5] == (0, 255, 0)).all() and (arr[:, :2] == (1, 2, 3)).all()
    square = Image.new("RGB", (5, 5))
    assert pad_to_aspect(square, 1, 1, (0, 0, 0)) is square


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (336, 336), (100, 37), (1200, 1100)])
def test_matches_clip_processor_numerics(size):
    # transformers' PIL CLIP processor keeps the slow processor's numerics (PIL bicubic on uint8, float64 rescale).
    image = random_image(sum(size), size)
    ours_train = InfLlavaImageProcessor(size={"height": 1008, "width": 1008})(image)["pixel_values"][0].numpy()
    clip_1008 = CLIPImageProcessorPil(size={"shortest_edge": 1008}, crop_size={"height": 1008, "width": 1008})
    ref_train = clip_1008(pad_to_aspect(image, 1, 1, (122, 116, 104)), return_tensors="np")["pixel_values"][0]
    assert np.array_equal(ours_train, ref_train)
    ours_base = InfLlavaImageProcessor(size={"height": 336, "width": 336}, pad_to_square=False)(image)
    ref_base = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})(
        image, return_tensors="np"
    )["pixel_values"][0]
    assert np.array_equal(ours_base["pixel_values"][0].numpy(), ref_base)


def test_modes_for_geometry():
    geo = Geometry(3, 3, 336, 14)
    assert InfLlavaImageProcessor.for_geometry(geo).size == {"height": 1008, "width": 1008}
    assert InfLlavaImageProcessor.for_geometry(geo, "base").size == {"height": 336, "width": 336}
    rect = InfLlavaImageProcessor.for_geometry(Geometry(2, 3, 24, 4))
    out = rect(random_image(0, (50, 90)))["pixel_values"]
    assert out.shape == (1, 3, 48, 72)


def test_processor_outputs_and_left_padding(tiny_processor, images):
    prompts = [
        tiny_processor.apply_chat_template([{"role": "user", "content": "<image>\nHi"}], add_generation_prompt=True),
        tiny_processor.apply_chat_template(
            [{"role": "user", "content": "<image>\nA much longer question about the picture?"}],
            add_generation_prompt=True,
        ),
    ]
    out = tiny_processor(images=images[:2], text=prompts, return_tensors="pt")
    assert set(out) == {"input_ids", "attention_mask", "pixel_values"}
    assert out["pixel_values"].shape == (2, 3, 72, 72) and out["pixel_values"].dtype == torch.float32
    short, long = out["attention_mask"]
    assert long.all() and not short.all() and short[-1] == 1 and short[0] == 0  # left padded
    assert (out["input_ids"][0][short == 0] == tiny_processor.tokenizer.pad_token_id).all()
    right = tiny_processor(images=images[:2], text=prompts, padding_side="right")
    assert right["attention_mask"][0][0] == 1 and right["attention_mask"][0][-1] == 0


def test_placeholder_count_must_match_images(tiny_processor, images):
    with pytest.raises(ValueError, match="1 <image> placeholder.*2 image"):
        tiny_processor(images=images[:2], text="<image> hi")
    with pytest.raises(ValueError, match="0 <image> placeholder.*1 image"):
        tiny_processor(images=images[:1], text="hi")


def test_max_length_never_truncates_images(tiny_processor, images):
    with pytest.raises(ValueError, match="over the limit of 20"):
        tiny_processor(images=images[:1], text="<image> describe", max_length=20)


def test_processor_round_trip(tmp_path, tiny_processor, images):
    tiny_processor.save_pretrained(tmp_path)
    loaded = InfLlavaProcessor.from_pretrained(tmp_path)
    assert loaded.geometry == tiny_processor.geometry and loaded.template == "llama3"
    assert loaded.image_token_id == tiny_processor.image_token_id
    assert loaded.image_processor.to_dict() == tiny_processor.image_processor.to_dict()
    text = "<image>\nWhat is this?"
    a, b = tiny_processor(images=images[:1], text=text), loaded(images=images[:1], text=text)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.tokenizer.get_vocab() == tiny_processor.tokenizer.get_vocab()


def test_apply_chat_template_batch_and_tokenize(tiny_processor, images):
    conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
    texts = tiny_processor.apply_chat_template([conv, conv], add_generation_prompt=True)
    assert isinstance(texts, list) and texts[0] == texts[1]
    inputs = tiny_processor.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, images=images[:1])
    assert inputs["input_ids"].shape[0] == 1 and inputs["pixel_values"].shape[0] == 1
    plain = tiny_processor.apply_chat_template(conv, add_generation_prompt=True, template="plain")
    assert plain == "<image>"


def test_stop_tokens(tiny_processor):
    tok = tiny_processor.tokenizer
    assert tiny_processor.stop_token_ids() == [
        tok.convert_tokens_to_ids("<|eot_id|>"),
        tok.convert_tokens_to_ids("<|end_of_text|>"),
    ]
    assert tok.convert_tokens_to_ids("<|im_end|>") in tiny_processor.stop_token_ids("chatml")
