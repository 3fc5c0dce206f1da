"""The OpenAI-compatible server on loopback, driven by the unmodified `openai` client (and raw HTTP where the
exact wire format matters): answers equal `inf-llava ask`, streaming, batching, limits, security, bad requests."""

import base64
import http.server
import io
import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import openai
import pytest
from conftest import random_image, shapes_image
from PIL import Image

from inf_llava.cli import main
from inf_llava.inference import InfLlavaEngine
from inf_llava.serve import ServerSettings, start_background_server

MODEL = "tiny"


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def user(text, *urls):
    parts = [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return InfLlavaEngine.from_pretrained(tiny_model_dir, dtype="fp32")


@contextmanager
def serving(engine, **overrides):
    settings = ServerSettings(model_name=MODEL, **overrides)
    with start_background_server(engine, settings) as server:
        yield server


@pytest.fixture(scope="module")
def server(engine):
    with serving(engine) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def post(url, body, headers=None, raw=None):
    """(status, parsed JSON or text, headers) of a POST, without raising on 4xx/5xx."""
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            text, status, got = response.read().decode(), response.status, response.headers
    except urllib.error.HTTPError as error:
        text, status, got = error.read().decode(), error.code, error.headers
    try:
        return status, json.loads(text), got
    except json.JSONDecodeError:
        return status, text, got


def assert_openai_error(status, body, expected_status, fragment):
    assert status == expected_status, (status, body)
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert fragment in body["error"]["message"], body


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, image in enumerate([shapes_image(), random_image(11, (90, 50))]):
        path = folder / f"{i}.png"
        path.write_bytes(png_bytes(image))
        paths.append(path)
    return paths


def ask_cli(capsys, model_dir, image, question, max_tokens):
    code = main(
        ["ask", "--model", str(model_dir), "--dtype", "fp32", "--image", str(image), "-q", question]
        + ["--max-new-tokens", str(max_tokens)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    return out[:-1]


QUESTIONS = ["What is this?", "Which colour is the circle?", "How many shapes are there?", "Describe the image."]


def test_models_and_health(server, client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    with urllib.request.urlopen(server.url + "/health") as response:
        assert json.load(response) == {"status": "ok", "model": MODEL, "pending": 0}


def test_completion_equals_ask_and_16_concurrent_requests_batch(capsys, tiny_model_dir, server, client, pictures):
    cases = [(pictures[i % 2], QUESTIONS[(i // 2) % 4]) for i in range(16)]
    expected = {}
    for path, question in set(cases):
        expected[(path, question)] = ask_cli(capsys, tiny_model_dir, path, question, 12)
    assert len(set(expected.values())) > 4

    response = client.chat.completions.create(
        model=MODEL, messages=user(QUESTIONS[0], data_url(pictures[0].read_bytes())), max_tokens=12
    )
    assert response.choices[0].message.content == expected[(pictures[0], QUESTIONS[0])]
    assert response.object == "chat.completion" and response.choices[0].finish_reason in ("stop", "length")
    usage = response.usage
    assert usage.completion_tokens <= 12 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens > server.scheduler.engine.processor.tokens_per_image

    batches_before = server.scheduler.batches_run

    def one(case):
        path, question = case
        reply = client.chat.completions.create(
            model=MODEL, messages=user(question, data_url(path.read_bytes())), max_tokens=12
        )
        return reply.choices[0].message.content

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, cases))
    assert answers == [expected[case] for case in cases]
    assert server.scheduler.largest_batch > 1
    assert server.scheduler.batches_run - batches_before < 16  # requests shared generate calls


def test_streaming_matches_and_ends_with_done(server, client, pictures):
    messages = user("Describe the image.", data_url(pictures[1].read_bytes()))
    plain = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=16)
    stream = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=16, stream=True, stream_options={"include_usage": True}
    )
    pieces, finish, usage = [], None, None
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage is not None:
            usage = chunk.usage
    assert "".join(pieces) == plain.choices[0].message.content
    assert finish == plain.choices[0].finish_reason
    assert usage.model_dump() == plain.usage.model_dump()

    request = urllib.request.Request(
        server.url + "/v1/chat/completions",
        data=json.dumps({"model": MODEL, "messages": messages, "max_tokens": 4, "stream": True}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [e for e in response.read().decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert json.loads(events[-2][6:])["choices"][0]["finish_reason"] is not None


def test_max_tokens_stop_and_mixed_limits_in_one_batch(server, client, pictures):
    url = data_url(pictures[0].read_bytes())
    long = client.chat.completions.create(model=MODEL, messages=user("What is this?", url), max_tokens=20)
    text = long.choices[0].message.content
    stop = text[4:6]
    cut = client.chat.completions.create(model=MODEL, messages=user("What is this?", url), max_tokens=20, stop=[stop])
    assert cut.choices[0].message.content == text[: text.index(stop)] and cut.choices[0].finish_reason == "stop"

    limits = [3, 20, 7, 1, 20, 12, 5, 9]
    with ThreadPoolExecutor(len(limits)) as pool:
        replies = list(
            pool.map(
                lambda n: client.chat.completions.create(
                    model=MODEL, messages=user("What is this?", url), max_tokens=n
                ),
                limits,
            )
        )
    for n, reply in zip(limits, replies):
        alone = client.chat.completions.create(model=MODEL, messages=user("What is this?", url), max_tokens=n)
        assert reply.choices[0].message.content == alone.choices[0].message.content
        assert reply.usage.completion_tokens == alone.usage.completion_tokens <= n
        assert reply.choices[0].finish_reason == alone.choices[0].finish_reason


def test_text_only_and_multi_turn(server, client, engine, pictures):
    url = data_url(pictures[0].read_bytes())
    first = client.chat.completions.create(model=MODEL, messages=user("What is this?", url), max_tokens=8)
    messages = [
        {"role": "system", "content": "You are terse."},
        *user("What is this?", url),
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Are you sure?"},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8)
    reference = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": first.choices[0].message.content},
        {"role": "user", "content": "Are you sure?"},
    ]
    from inf_llava.inference import GenerationSettings

    image = Image.open(pictures[0]).convert("RGB")
    assert (
        reply.choices[0].message.content
        == engine.complete([reference], [[image]], GenerationSettings(max_new_tokens=8))[0].text
    )
    text_only = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi 🤖"}], max_tokens=4
    )
    assert text_only.usage.prompt_tokens == engine.prompt_length([{"role": "user", "content": "Hi 🤖"}])


BAD_REQUESTS = {
    "malformed base64": (user("What?", "data:image/png;base64,@@not*base64@@"), 400, "malformed base64"),
    "non-image bytes": (user("What?", data_url(b"just some text, not pixels")), 400, "not a recognised image format"),
    "truncated image": (user("What?", data_url(png_bytes(random_image(1, (64, 64)))[:150])), 400, "corrupt"),
    "zero-byte image": (user("What?", "data:image/png;base64,"), 400, "empty (0 bytes)"),
    "remote URL": (user("What?", "http://127.0.0.1:9/cat.png"), 400, "remote image URLs are disabled"),
    "file URL": (user("What?", "file:///etc/passwd"), 400, "local files and file: URLs are never read"),
    "local path": (user("What?", "/etc/passwd"), 400, "local files and file: URLs are never read"),
    "image marker in text": (user("compare <image> please"), 400, "image marker"),
    "assistant first": ([{"role": "assistant", "content": "hi"}], 400, "at least one user message"),
    "turns out of order": (
        [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
        400,
        "turns must alternate",
    ),
    "too many images": (user("What?", *[data_url(png_bytes(shapes_image()))] * 5), 400, "the limit is 4"),
    "prompt over context": (user("three " * 3000), 400, "the model's context is 2048 tokens"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(server, client, name):
    messages, status, fragment = BAD_REQUESTS[name]
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model=MODEL, messages=messages, max_tokens=4)
    assert info.value.status_code == status
    assert fragment in info.value.body["message"], info.value.body
    code, body, _ = post(server.url + "/v1/chat/completions", {"model": MODEL, "messages": messages})
    assert_openai_error(code, body, status, fragment)
    assert client.chat.completions.create(model=MODEL, messages=user("Still there?"), max_tokens=2).choices


def test_malformed_bodies(server):
    url = server.url + "/v1/chat/completions"
    assert_openai_error(*post(url, {"model": MODEL})[:2], 400, "messages")
    assert_openai_error(*post(url, {"model": MODEL, "messages": []})[:2], 400, "at least 1 item")
    assert_openai_error(*post(url, None, raw=b"{not json")[:2], 400, "invalid request")
    bad_part = user("x") + [{"role": "user", "content": [{"type": "input_audio", "data": "..."}]}]
    assert_openai_error(*post(url, {"model": MODEL, "messages": bad_part})[:2], 400, "messages.1.content")
    assert_openai_error(*post(url, {"model": MODEL, "messages": user("x"), "n": 2})[:2], 400, "n must be 1")
    assert_openai_error(*post(url, {"model": "gpt-4o", "messages": user("x")})[:2], 404, "is not served here")
    too_many = {"model": MODEL, "messages": user("x"), "max_tokens": 100000}
    assert_openai_error(*post(url, too_many)[:2], 400, "over this server's limit")
    assert_openai_error(*post(url, {"model": MODEL, "messages": user("x"), "temperature": -1})[:2], 400, "temperature")
    status, body, _ = post(server.url + "/v2/nothing", {})
    assert_openai_error(status, body, 404, "no such endpoint")


def test_request_size_and_pixel_limits(engine):
    with serving(engine, max_request_bytes=50_000, max_image_pixels=10_000) as small:
        url = small.url + "/v1/chat/completions"
        big = data_url(png_bytes(random_image(3, (200, 200))))
        status, body, _ = post(url, {"model": MODEL, "messages": user("x", big)})
        assert_openai_error(status, body, 413, "over this server's limit of 50000 bytes")
        bomb = data_url(png_bytes(Image.new("1", (1000, 1000))))  # 1 MP of zeros: tiny as a PNG
        status, body, _ = post(url, {"model": MODEL, "messages": user("x", bomb)})
        assert_openai_error(status, body, 400, "1000000 pixels is over the limit of 10000")
        assert post(url, {"model": MODEL, "messages": user("fine"), "max_tokens": 2})[0] == 200


def test_api_key(engine):
    with serving(engine, api_key="s3cret") as secured:
        anonymous = openai.OpenAI(base_url=secured.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            anonymous.models.list()
        status, body, _ = post(secured.url + "/v1/chat/completions", {"model": MODEL, "messages": user("x")})
        assert_openai_error(status, body, 401, "missing or invalid API key")
        good = openai.OpenAI(base_url=secured.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model=MODEL, messages=user("x"), max_tokens=2).choices
        with urllib.request.urlopen(secured.url + "/health") as response:
            assert response.status == 200


def preflight(url, origin):
    request = urllib.request.Request(
        url,
        method="OPTIONS",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, response.headers
    except urllib.error.HTTPError as error:
        return error.code, error.headers


def test_cors_is_off_by_default_and_opt_in(server, engine):
    status, headers = preflight(server.url + "/v1/chat/completions", "https://evil.example")
    assert headers.get("Access-Control-Allow-Origin") is None and status >= 400
    with serving(engine, cors_origins=("https://app.example",)) as open_server:
        status, headers = preflight(open_server.url + "/v1/chat/completions", "https://app.example")
        assert status == 200 and headers["Access-Control-Allow-Origin"] == "https://app.example"
        _, headers = preflight(open_server.url + "/v1/chat/completions", "https://evil.example")
        assert headers.get("Access-Control-Allow-Origin") is None


def test_overload_answers_429_and_recovers(engine):
    with serving(engine, max_pending=2, max_batch_size=1, batch_wait_ms=0) as busy:
        url = busy.url + "/v1/chat/completions"
        body = {"model": MODEL, "messages": user("Describe."), "max_tokens": 64}
        with ThreadPoolExecutor(12) as pool:
            results = list(pool.map(lambda _: post(url, body), range(12)))
        statuses = [status for status, _, _ in results]
        assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses, statuses
        refused = next(r for r in results if r[0] == 429)
        assert_openai_error(refused[0], refused[1], 429, "server busy")
        assert refused[2]["Retry-After"] == "1"
        assert post(url, body)[0] == 200


def test_request_timeout_answers_504_and_stops_the_work(engine):
    with serving(engine, request_timeout=0.3) as slow:
        url = slow.url + "/v1/chat/completions"
        start = time.monotonic()
        status, body, _ = post(url, {"model": MODEL, "messages": user("Describe."), "max_tokens": 1900})
        assert_openai_error(status, body, 504, "timed out")
        client = openai.OpenAI(base_url=slow.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIError, match="timed out"):
            for _ in client.chat.completions.create(
                model=MODEL, messages=user("Describe."), max_tokens=1900, stream=True
            ):
                pass
        assert time.monotonic() - start < 30
        assert post(url, {"model": MODEL, "messages": user("hi"), "max_tokens": 2})[0] == 200


@contextmanager
def file_server(routes):
    """A loopback HTTP server answering GET path -> (status, headers, body)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, headers, body = routes.get(self.path, (404, {}, b"missing"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_remote_images_only_when_enabled_and_bounded(engine, pictures):
    picture = pictures[0].read_bytes()
    routes = {
        "/cat.png": (200, {"Content-Type": "image/png"}, picture),
        "/big.png": (200, {"Content-Type": "image/png"}, picture + b"\0" * 60_000),
        "/to-file": (302, {"Location": "file:///etc/passwd"}, b""),
    }
    settings = dict(allow_remote_images=True, remote_max_bytes=50_000, allow_private_image_hosts=True)
    with file_server(routes) as origin, serving(engine, **settings) as remote:
        client = openai.OpenAI(base_url=remote.url + "/v1", api_key="x", max_retries=0)
        fetched = client.chat.completions.create(model=MODEL, messages=user("What?", origin + "/cat.png"), max_tokens=8)
        inline = client.chat.completions.create(model=MODEL, messages=user("What?", data_url(picture)), max_tokens=8)
        assert fetched.choices[0].message.content == inline.choices[0].message.content
        url = remote.url + "/v1/chat/completions"
        for path, fragment in (
            ("/big.png", "over the limit of 50000"),
            ("/to-file", "Redirection to url 'file:///etc/passwd' is not allowed"),
            ("/nope", "404"),
        ):
            status, body, _ = post(url, {"model": MODEL, "messages": user("What?", origin + path)})
            assert_openai_error(status, body, 400, fragment)
        status, body, _ = post(url, {"model": MODEL, "messages": user("What?", "file:///etc/hostname")})
        assert_openai_error(status, body, 400, "never read")


def test_remote_images_from_non_public_addresses_are_refused(engine, pictures):
    routes = {"/cat.png": (200, {"Content-Type": "image/png"}, pictures[0].read_bytes())}
    with file_server(routes) as origin, serving(engine, allow_remote_images=True) as remote:
        url = remote.url + "/v1/chat/completions"
        port = origin.rsplit(":", 1)[1]
        for target in (origin, f"http://localhost:{port}", f"http://[::ffff:127.0.0.1]:{port}"):
            status, body, _ = post(url, {"model": MODEL, "messages": user("What?", target + "/cat.png")})
            assert_openai_error(status, body, 400, "not a public address")
        status, body, _ = post(url, {"model": MODEL, "messages": user("What?", "http://169.254.169.254/latest")})
        assert_openai_error(status, body, 400, "could not fetch")
        status, _, _ = post(url, {"model": MODEL, "messages": user("What?", data_url(pictures[0].read_bytes()))})
        assert status == 200  # still serving


def test_views_endpoint_shows_the_dcm_layout(server, engine):
    image = shapes_image((120, 80))
    status, views, _ = post(server.url + "/v1/inf-llava/views", {"image": data_url(png_bytes(image))})
    assert status == 200
    geometry = engine.model.config.geometry
    assert views["grid"] == [geometry.grid_h, geometry.grid_w] and views["input_size"] == [120, 80]
    assert len(views["local"]) == len(views["global"]) == geometry.num_crops

    def decode(url):
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)

    big = decode(views["image"])
    assert big.shape[:2] == geometry.high_res_size
    S = geometry.view_size
    for k, tile in enumerate(views["local"]):
        i, j = divmod(k, geometry.grid_w)
        assert np.abs(decode(tile) - big[i * S : (i + 1) * S, j * S : (j + 1) * S]).max() <= 1
    for k, view in enumerate(views["global"]):
        i, j = divmod(k, geometry.grid_w)
        assert np.abs(decode(view) - big[i :: geometry.grid_h, j :: geometry.grid_w]).max() <= 1
    status, body, _ = post(server.url + "/v1/inf-llava/views", {"image": "file:///etc/passwd"})
    assert_openai_error(status, body, 400, "never read")


def test_page_and_static_files(server):
    with urllib.request.urlopen(server.url + "/") as response:
        page = response.read().decode()
    assert '<script src="/static/app.js">' in page and 'id="image-input"' in page
    with urllib.request.urlopen(server.url + "/static/app.js") as response:
        assert response.headers["Content-Type"].startswith("text/javascript")
        assert "/v1/chat/completions" in response.read().decode()
    for bad in ("/static/..%2Fapp.py", "/static/settings.py", "/static/.hidden.js"):
        try:
            urllib.request.urlopen(server.url + bad)
            raise AssertionError(bad)
        except urllib.error.HTTPError as error:
            assert error.code == 404
