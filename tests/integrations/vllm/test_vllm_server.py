"""``vllm serve`` on the demo model, on loopback, as users start it (multi-process, torch.compile on), answering the
unmodified ``openai`` client: plain and streamed answers and the prompt-token count (image slots included) equal
this package's own."""

from __future__ import annotations

import base64
import io
import os

import pytest
from vllm_helpers import DEMO_DIR, MAX_TOKENS, demo_questions

from inf_llava.bench.serve import free_port, running_server, vllm_executable
from inf_llava.images import load_image
from inf_llava.inference import GenerationSettings, InfLlavaEngine

pytestmark = pytest.mark.vllm

QUESTIONS = demo_questions(6)
SETTINGS = GenerationSettings(max_new_tokens=MAX_TOKENS)
START_TIMEOUT_S = 900


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import openai

    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    command = [vllm_executable(), "serve", str(DEMO_DIR), "--host", "127.0.0.1", "--port", str(port)]
    command += ["--dtype", "float32", "--max-model-len", "1024", "--served-model-name", "demo", "--seed", "0"]
    command += ["--media-io-kwargs", '{"image": {"image_mode": null}}']  # images decoded as the official code does
    env = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}  # as users run it
    with running_server(command, port, log, timeout=START_TIMEOUT_S, env=env) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300), port


@pytest.fixture(scope="module")
def ours():
    return InfLlavaEngine.from_pretrained(DEMO_DIR, dtype="fp32")


def data_url(image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def request_messages(images, text):
    parts = [{"type": "image_url", "image_url": {"url": data_url(image)}} for image in images]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def our_messages(count, text):
    return [{"role": "user", "content": [*({"type": "image"} for _ in range(count)), {"type": "text", "text": text}]}]


def test_models_endpoint_lists_the_served_model(server):
    client, _ = server
    assert [model.id for model in client.models.list()] == ["demo"]


def test_plain_answers_and_prompt_tokens_equal_ours(server, ours):
    client, _ = server
    for question in QUESTIONS:
        image = load_image(question.image)
        response = client.chat.completions.create(
            model="demo", messages=request_messages([image], question.text), max_tokens=MAX_TOKENS, temperature=0
        )
        expected = ours.complete([our_messages(1, question.text)], [[image]], SETTINGS)[0]
        choice = response.choices[0]
        assert choice.message.content == expected.text, question.id
        assert choice.finish_reason == expected.finish_reason == "stop"
        assert (
            response.usage.prompt_tokens == expected.prompt_tokens == ours.prompt_length(our_messages(1, question.text))
        )
        assert response.usage.completion_tokens == expected.completion_tokens


def test_streamed_answer_equals_the_plain_one(server, ours):
    client, _ = server
    question = QUESTIONS[2]
    image = load_image(question.image)
    stream = client.chat.completions.create(
        model="demo",
        messages=request_messages([image], question.text),
        max_tokens=MAX_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    expected = ours.complete([our_messages(1, question.text)], [[image]], SETTINGS)[0]
    assert "".join(pieces) == expected.text and len([p for p in pieces if p]) >= 1
    assert finish == "stop"
    assert usage.prompt_tokens == expected.prompt_tokens and usage.completion_tokens == expected.completion_tokens


def test_each_image_adds_the_geometry_s_token_count(server, ours):
    """Two images cost one image's slots (``tokens_per_image`` from the geometry) plus its separator more than one."""
    client, _ = server
    images = [load_image(q.image) for q in QUESTIONS[:2]]
    counts = []
    for n in (1, 2):
        response = client.chat.completions.create(
            model="demo", messages=request_messages(images[:n], "Where is the red box?"), max_tokens=1, temperature=0
        )
        counts.append(response.usage.prompt_tokens)
        assert response.usage.prompt_tokens == ours.prompt_length(our_messages(n, "Where is the red box?"))
    separator = len(ours.processor.tokenizer("\n", add_special_tokens=False)["input_ids"])
    assert counts[1] - counts[0] == ours.processor.tokens_per_image + separator
    assert ours.processor.tokens_per_image == ours.model.config.geometry.tokens_per_image == 36  # 6 x 6 patches


def test_transparent_image_is_seen_as_ours(server, ours):
    """vLLM composites RGBA on white by default; with ``--media-io-kwargs '{"image": {"image_mode": null}}'`` the
    decoded image goes to this package's processor, which drops alpha as the official ``.convert("RGB")`` does."""
    from PIL import Image

    client, _ = server
    base = load_image(QUESTIONS[0].image)
    rgba = base.convert("RGBA")
    alpha = Image.new("L", rgba.size, 255)
    alpha.paste(0, (0, 0, rgba.width // 2, rgba.height))  # left half fully transparent (colours kept underneath)
    rgba.putalpha(alpha)
    response = client.chat.completions.create(
        model="demo",
        messages=request_messages([rgba], QUESTIONS[0].text),
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    expected = ours.complete([our_messages(1, QUESTIONS[0].text)], [[load_image(rgba)]], SETTINGS)[0]
    assert response.choices[0].message.content == expected.text


def test_a_conversation_the_template_refuses_is_a_400(server):
    import openai

    client, _ = server
    with pytest.raises(openai.BadRequestError, match="turns must alternate"):
        client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            max_tokens=4,
        )
