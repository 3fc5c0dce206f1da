"""Loading options (dtype, device_map, bitsandbytes) and the engine's serving helpers (streaming with usage and
cancellation, context limits, time limits)."""

import time

import pytest
import torch
from conftest import shapes_image

from inf_llava.errors import ModelLoadError
from inf_llava.inference import GenerationSettings, InfLlavaEngine
from inf_llava.loading import QUANTIZATION_SKIP_MODULES, load_model, quantization_config

SETTINGS = GenerationSettings(max_new_tokens=12)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="fp32")


def test_dtypes(tiny_model_dir):
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        model = load_model(tiny_model_dir, dtype=name)
        assert {p.dtype for p in model.parameters()} == {dtype}
        assert not model.training
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        load_model(tiny_model_dir, dtype="fp8")


def test_bf16_engine_answers(tiny_model_dir):
    engine = InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="bf16")
    completion = engine.complete([engine.question("What?")], [[shapes_image()]], SETTINGS)[0]
    assert completion.completion_tokens >= 1 and completion.prompt_tokens > engine.processor.tokens_per_image


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match="not a model directory"):
        InfLlavaEngine.from_pretrained(tmp_path)


def test_device_map_split_with_offload_gives_the_same_answers(tiny_model_dir, engine, tmp_path):
    """A device map that splits the model into blocks (accelerate hooks move tensors between them; one LM layer and
    the head are even offloaded to disk) generates exactly what the single-device model does."""
    device_map = {
        "model.image_encoder": "cpu",
        "model.language_model.embed_tokens": "cpu",
        "model.language_model.layers.0": "cpu",
        "model.language_model.layers.1": "disk",
        "model.language_model.norm": "cpu",
        "model.language_model.rotary_emb": "cpu",
        "lm_head": "disk",
    }
    split = InfLlavaEngine.from_pretrained(
        tiny_model_dir, dtype="fp32", device_map=device_map, offload_folder=str(tmp_path / "offload")
    )
    assert split.model.hf_device_map == device_map
    assert hasattr(split.model.model.language_model.layers[1], "_hf_hook")
    images = [[shapes_image()], [shapes_image((90, 140))]]
    questions = [engine.question("What is this?"), engine.question("Where is the red circle?")]
    ours = split.complete(questions, images, SETTINGS)
    reference = engine.complete(questions, images, SETTINGS)
    assert [c.token_ids for c in ours] == [c.token_ids for c in reference]


def test_device_map_keeps_the_image_encoder_whole(tiny_model_dir):
    """`auto` placement never splits the image encoder (tower + DEM + projector) or an LM layer across devices."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes

    model = load_model(tiny_model_dir, dtype="fp32")
    assert {"InfLlavaImageEncoder", "LlamaDecoderLayer"} <= set(model._no_split_modules)
    total = compute_module_sizes(model)[""]
    splits = []
    for fraction in (0.4, 0.6, 0.75, 0.88, 0.95):  # "cpu" budgets too small for the model: the rest spills to "disk"
        device_map = infer_auto_device_map(
            model, max_memory={"cpu": int(total * fraction)}, no_split_module_classes=list(model._no_split_modules)
        )
        assert not any(key.startswith("model.image_encoder.") for key in device_map), device_map
        assert not any(key.startswith("model.language_model.layers.") and key.count(".") > 3 for key in device_map)
        assert "disk" in device_map.values()
        splits.append(device_map)
    assert any(
        m.get("model.language_model.layers.0") == "cpu" and m.get("model.language_model.layers.1") == "disk"
        for m in splits
    ), splits


def test_quantization_config_skips_vision_side():
    from transformers.quantizers.quantizers_utils import should_convert_module

    config = quantization_config("4bit", torch.bfloat16)
    assert config.load_in_4bit and config.bnb_4bit_compute_dtype == torch.bfloat16
    skip = config.llm_int8_skip_modules
    assert skip == list(QUANTIZATION_SKIP_MODULES)
    assert not should_convert_module("model.image_encoder.vision_tower.encoder.layers.0.mlp.fc1", skip)
    assert not should_convert_module("model.image_encoder.dem.attn.q_proj", skip)
    assert not should_convert_module("model.image_encoder.projector.0", skip)
    assert not should_convert_module("lm_head", skip)
    assert should_convert_module("model.language_model.layers.0.mlp.gate_proj", skip)
    assert quantization_config("8bit", torch.float16).load_in_8bit


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error")
def test_quantization_without_cuda_is_one_clear_error(tiny_model_dir):
    for bits in ("4bit", "8bit"):
        with pytest.raises(ModelLoadError, match=f"--load-in-{bits} needs a CUDA GPU"):
            load_model(tiny_model_dir, quantization=bits)


@pytest.mark.gpu
def test_quantized_4bit_keeps_vision_side_16bit(tiny_model_dir):
    model = load_model(tiny_model_dir, quantization="4bit", dtype="bf16")
    assert {p.dtype for p in model.model.image_encoder.parameters()} == {torch.bfloat16}
    from inf_llava import InfLlavaProcessor

    engine = InfLlavaEngine(model, InfLlavaProcessor.from_pretrained(str(tiny_model_dir)))
    assert engine.complete([engine.question("What?")], [[shapes_image()]], SETTINGS)[0].completion_tokens >= 1


# ---- engine helpers used by the server and the CLI --------------------------------------------------------------
def test_stream_returns_usage_and_matches_complete(engine):
    messages, images = engine.question("What is this?"), [shapes_image()]
    reference = engine.complete([messages], [images], SETTINGS)[0]
    generator = engine.stream(messages, images, SETTINGS)
    pieces = []
    while True:
        try:
            pieces.append(next(generator))
        except StopIteration as stop:
            result = stop.value
            break
    assert "".join(pieces) == result.text == reference.text
    assert (result.prompt_tokens, result.completion_tokens, result.finish_reason) == (
        reference.prompt_tokens,
        reference.completion_tokens,
        reference.finish_reason,
    )


def test_closing_a_stream_stops_generation(engine):
    generator = engine.stream(engine.question("Describe."), [shapes_image()], GenerationSettings(max_new_tokens=1500))
    next(generator)
    start = time.perf_counter()
    generator.close()
    closed_in = time.perf_counter() - start
    full_start = time.perf_counter()
    engine.complete([engine.question("Describe.")], [[shapes_image()]], GenerationSettings(max_new_tokens=300))
    three_hundred = time.perf_counter() - full_start
    assert closed_in < three_hundred / 4  # 1500 tokens would take about 5x as long as 300


def test_stop_strings_cut_stream_and_complete_alike(engine):
    messages, images = engine.question("What is this?"), [shapes_image()]
    text = engine.complete([messages], [images], SETTINGS)[0].text
    stop = text[3:5]
    settings = GenerationSettings(max_new_tokens=12, stop=(stop,))
    cut = engine.complete([messages], [images], settings)[0]
    streamed = list(engine.stream(messages, images, settings))
    assert cut.text == "".join(streamed) == text[: text.index(stop)] and cut.finish_reason == "stop"


def test_prompt_longer_than_context_is_refused(engine):
    context = engine.context_length
    assert context == 2048
    too_long = engine.question("one two three " * 1200)
    assert engine.prompt_length(too_long) > context
    with pytest.raises(ValueError, match="over the limit of 2048 .*image slots are never truncated"):
        engine.complete([too_long], [[shapes_image()]], SETTINGS)


def test_answer_never_runs_past_the_context(engine):
    base = engine.prompt_length(engine.question(""))
    per_word = engine.prompt_length(engine.question("three " * 100)) - engine.prompt_length(engine.question("three"))
    words = (engine.context_length - base - 6) * 99 // per_word  # about 6 tokens of room left
    messages = engine.question("three " * words)
    room = engine.context_length - engine.prompt_length(messages)
    assert 0 < room < 12, room
    result = engine.complete([messages], [[shapes_image()]], SETTINGS)[0]
    assert result.completion_tokens <= room


def test_max_time_stops_generation(engine):
    settings = GenerationSettings(max_new_tokens=1500, max_time=0.05)
    start = time.perf_counter()
    result = engine.complete([engine.question("Describe.")], [[shapes_image()]], settings)[0]
    assert result.finish_reason == "length" and result.completion_tokens < 1500
    assert time.perf_counter() - start < 5
    with pytest.raises(ValueError, match="max_time must be > 0"):
        GenerationSettings(max_time=0)


def test_stop_prefix_length_holds_back_only_possible_stop_starts():
    from inf_llava.inference import stop_prefix_length

    assert stop_prefix_length("the end ", (" b",)) == 1  # " " may begin " b"
    assert stop_prefix_length("the end", (" b",)) == 0
    assert stop_prefix_length("abcSTO", ("STOP", "cS")) == 3  # the longest possible start wins
    assert stop_prefix_length("abc", ("abc",)) == 0  # a whole stop string is a cut, not a prefix
    assert stop_prefix_length("abc", ()) == 0
