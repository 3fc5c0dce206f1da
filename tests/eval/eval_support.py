"""Fixtures of the evaluation tests (the modules import them): a tiny model saved to disk, a loopback stub judge."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny preset saved like a released checkpoint (what ``--model`` / ``pretrained=`` point at)."""
    from inf_llava.presets import build_tiny

    model, processor = build_tiny(seed=0)
    path = tmp_path_factory.mktemp("models") / "tiny-inf-llava"
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


class StubJudge:
    """A real HTTP server on 127.0.0.1 that answers OpenAI chat-completion requests and records them."""

    def __init__(self, reply):
        self.reply = reply  # callable(request body) -> reply text
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(body)
                stub.headers.append({k.lower(): v for k, v in self.headers.items()})
                if not self.path.endswith("/chat/completions"):
                    self.send_error(404)
                    return
                payload = {
                    "id": f"chatcmpl-{len(stub.requests)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "stub-judge-0613",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": stub.reply(body)},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub_judge():
    judges = []

    def start(reply):
        judge = StubJudge(reply)
        judges.append(judge)
        return judge

    yield start
    for judge in judges:
        judge.close()
