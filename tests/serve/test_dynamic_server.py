"""A dynamic-grid model behind the real server on loopback: the views endpoint shows each image's own grid, and
concurrent requests with different grids (batched together by the scheduler) answer as each request alone."""

import base64
import io
import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import random_image
from PIL import Image

from inf_llava.inference import GenerationSettings, InfLlavaEngine
from inf_llava.presets import build_tiny
from inf_llava.serve import ServerSettings, start_background_server


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-dynamic")
    model, processor = build_tiny(seed=0, grid="dynamic")
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return InfLlavaEngine.from_pretrained(path, dtype="fp32")


@pytest.fixture(scope="module")
def server(engine):
    with start_background_server(engine, ServerSettings(model_name="tiny", batch_wait_ms=1000)) as running:
        yield running


def _url(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _post(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _decode(url):
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


@pytest.mark.parametrize("size,grid", [((144, 72), [2, 4]), ((72, 144), [4, 2]), ((20, 20), [1, 1])])
def test_views_endpoint_shows_the_grid_chosen_for_the_image(server, size, grid):
    views = _post(server.url + "/v1/inf-llava/views", {"image": _url(random_image(0, size))})
    assert views["grid"] == grid and views["dynamic"] is True
    assert views["high_res"] == [24 * grid[0], 24 * grid[1]] and views["input_size"] == list(size)
    assert len(views["local"]) == len(views["global"]) == grid[0] * grid[1]
    assert _decode(views["image"]).shape == (24 * grid[0], 24 * grid[1], 3)
    assert all(_decode(v).shape == (24, 24, 3) for v in views["local"] + views["global"])
    assert views["tokens_per_image"] == 36


def test_concurrent_requests_with_different_grids_answer_as_alone(server, engine):
    images = [random_image(1, (144, 72)), random_image(2, (72, 144)), random_image(3, (80, 80))]
    alone = [engine.answer(im, "What is it?", GenerationSettings(max_new_tokens=5)) for im in images]
    together = engine.complete(
        [engine.question("What is it?")] * 3, [[im] for im in images], GenerationSettings(max_new_tokens=5)
    )
    assert [c.text for c in together] == alone

    def ask(image):
        body = {
            "model": "tiny",
            "max_tokens": 5,
            "temperature": 0,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": _url(image)}},
                        {"type": "text", "text": "What is it?"},
                    ],
                }
            ],
        }
        return _post(server.url + "/v1/chat/completions", body)["choices"][0]["message"]["content"]

    before = server.scheduler.batches_run
    with ThreadPoolExecutor(3) as pool:
        assert list(pool.map(ask, images)) == alone
    assert server.scheduler.batches_run - before < 3  # at least two requests shared a generate call
