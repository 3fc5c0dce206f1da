"""The web page in headless Chromium (Debian's `chromium`, installed by `make browser`, driven by Playwright):
upload an image, see the DCM crop layout, ask, watch the answer stream in, ask a follow-up, leave a screenshot.

Set INF_LLAVA_SCREENSHOT=path to keep the screenshot (`make screenshot` writes docs/img/web.png)."""

import base64
import io
import json
import os
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import shapes_image
from PIL import Image

from inf_llava.inference import InfLlavaEngine
from inf_llava.serve import ServerSettings, start_background_server

CHROMIUM = os.environ.get("INF_LLAVA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def first_turn(image_path, question):
    data = "data:image/png;base64," + base64.b64encode(image_path.read_bytes()).decode()
    content = [{"type": "image_url", "image_url": {"url": data}}, {"type": "text", "text": question}]
    return {"role": "user", "content": content}


def api_answer(url, image_path, question, max_tokens, history=()):
    messages = [*history, {"role": "user", "content": question}] if history else [first_turn(image_path, question)]
    body = json.dumps({"model": "tiny", "messages": messages, "max_tokens": max_tokens}).encode()
    request = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)["choices"][0]["message"]["content"]


def test_upload_layout_streamed_chat_and_screenshot(browser, tiny_model_dir, tmp_path):
    engine = InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="fp32")
    geometry = engine.model.config.geometry
    picture = tmp_path / "shapes.png"
    shapes_image((320, 200)).save(picture)
    with start_background_server(engine, ServerSettings(model_name="tiny")) as server:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console_errors = []
        page.on("console", lambda message: message.type == "error" and console_errors.append(message.text))
        page.on("pageerror", lambda error: console_errors.append(str(error)))
        page.goto(server.url + "/")
        page.wait_for_function("document.getElementById('model-name').textContent === 'tiny'")

        page.set_input_files("#image-input", str(picture))
        page.wait_for_selector("#layout[data-ready='true']", timeout=30_000)
        for kind in ("local", "global"):
            tiles = page.locator(f"#views-{kind} img")
            assert tiles.count() == geometry.num_crops
            page.wait_for_function(
                f"[...document.querySelectorAll('#views-{kind} img')].every(i => i.complete && i.naturalWidth > 0)"
            )
            assert tiles.first.evaluate("img => img.naturalWidth") == geometry.view_size
        assert page.locator("#high-res .line").count() == (geometry.grid_h - 1) + (geometry.grid_w - 1)
        caption = page.text_content("#layout-caption")
        assert "320×200 input" in caption and f"{geometry.tokens_per_image} image tokens" in caption

        page.fill("#max-tokens", "24")
        page.fill("#question", "What is in the image?")
        page.click("#send")
        page.wait_for_selector(".message.assistant[data-done='true']", timeout=60_000)
        answer = page.locator(".message.assistant").first.text_content()
        expected = api_answer(server.url, picture, "What is in the image?", 24)
        assert answer == expected and answer
        # streamed: the page appended the answer piece by piece as server-sent events arrived
        assert int(page.get_attribute(".message.assistant >> nth=0", "data-pieces")) >= 3

        page.fill("#question", "And the colours?")
        page.press("#question", "Enter")
        page.wait_for_selector(".message.assistant:nth-of-type(4)[data-done='true']", timeout=60_000)
        history = [first_turn(picture, "What is in the image?"), {"role": "assistant", "content": expected}]
        follow_up = api_answer(server.url, picture, "And the colours?", 24, history)
        assert page.locator(".message.assistant").nth(1).text_content() == follow_up
        assert not console_errors, console_errors

        shot = tmp_path / "web.png"
        page.screenshot(path=str(shot), full_page=True)
        with Image.open(shot) as image:
            assert image.width == 1280 and image.height >= 900
            pixels = np.asarray(image.convert("RGB").resize((64, 64))).reshape(-1, 3)
            assert len(np.unique(pixels, axis=0)) > 20  # not a blank page
        if target := os.environ.get("INF_LLAVA_SCREENSHOT"):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shot, target)
        page.close()


def test_refused_image_shows_an_error(browser, tiny_model_dir, tmp_path):
    engine = InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="fp32")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"not an image at all")
    with start_background_server(engine, ServerSettings(model_name="tiny")) as server:
        page = browser.new_page()
        page.goto(server.url + "/")
        page.set_input_files("#image-input", str(fake))
        error = page.wait_for_selector(".message.error", timeout=30_000)
        assert "image refused: image 0: not a recognised image format" in error.text_content()
        assert io.BytesIO(page.screenshot()).getbuffer().nbytes > 0
        page.close()
