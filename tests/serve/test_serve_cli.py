"""`inf-llava serve` / `inf-llava web` as real processes: start, answer, stop on Ctrl-C; bad options fail in one
line before the model loads."""

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from inf_llava.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_web_command_serves_page_and_api_then_stops_on_ctrl_c(tiny_model_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "inf_llava", "web", "--no-browser", "--model", str(tiny_model_dir), "--port", str(port)]
        + ["--log-level", "warning", "--api-key", "k"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    health = json.load(response)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
                time.sleep(0.1)
        assert health == {"status": "ok", "model": tiny_model_dir.name, "pending": 0}
        with urllib.request.urlopen(base + "/") as response:
            assert b'id="image-input"' in response.read()
        body = {"model": tiny_model_dir.name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}
        request = urllib.request.Request(
            base + "/v1/chat/completions",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Authorization": "Bearer k"},
        )
        with urllib.request.urlopen(request) as response:
            assert json.load(response)["usage"]["completion_tokens"] <= 3
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err.rstrip().endswith("server stopped")
    assert f"API http://127.0.0.1:{port}/v1, web page http://127.0.0.1:{port}/" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "option, message",
    [
        (["--max-batch-size", "0"], "max_batch_size must be >= 1, got 0"),
        (["--request-timeout", "0"], "timeouts must be > 0"),
        (["--max-pending", "-3"], "max_pending must be >= 1, got -3"),
    ],
)
def test_serve_rejects_bad_limits_in_one_line(capsys, tiny_model_dir, option, message):
    assert main(["serve", "--model", str(tiny_model_dir), *option]) == 2
    assert capsys.readouterr().err == f"error: {message}\n"
