"""Serve the model over HTTP: an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models, GET /health) and
a web page at /.

    inf-llava serve --model DIR --port 8000
    curl localhost:8000/v1/chat/completions -H 'Content-Type: application/json' \\
      -d '{"model": "DIR", "messages": [{"role": "user", "content": "Hello"}]}'

Images travel as data: URLs in image_url parts. Remote http(s) image URLs are refused unless --allow-remote-images;
local paths and file: URLs are always refused. Bind to 127.0.0.1 (the default) unless the API key and limits suit
your network. See docs/serving.md.
"""

from __future__ import annotations

import argparse

from ._common import add_model_arguments

NAME = "serve"
HELP = "OpenAI-compatible HTTP API and web page"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..serve.settings import ServerSettings

    d = ServerSettings()
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None, help="model id of the API (default: the folder's name)")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or $INF_LLAVA_API_KEY)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN", help="allow this origin (CORS)")
    parser.add_argument("--allow-remote-images", action="store_true", help="fetch http(s) image URLs")
    parser.add_argument(
        "--allow-private-image-hosts",
        action="store_true",
        help="with --allow-remote-images, also fetch from loopback / private / link-local addresses",
    )
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-request-bytes", type=int, default=d.max_request_bytes, metavar="N")
    limits.add_argument("--max-images", type=int, default=d.max_images, metavar="N", help="images per request")
    limits.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, metavar="N")
    limits.add_argument("--max-tokens-limit", type=int, default=d.max_tokens_limit, metavar="N")
    limits.add_argument("--default-max-tokens", type=int, default=d.default_max_tokens, metavar="N")
    limits.add_argument("--request-timeout", type=float, default=d.request_timeout, metavar="SECONDS")
    limits.add_argument(
        "--max-pending", type=int, default=d.max_pending, metavar="N", help="queued + running requests; more get 429"
    )
    limits.add_argument("--max-batch-size", type=int, default=d.max_batch_size, metavar="N")
    limits.add_argument("--batch-wait-ms", type=float, default=d.batch_wait_ms, metavar="MS")
    limits.add_argument("--remote-max-bytes", type=int, default=d.remote_max_bytes, metavar="N")
    limits.add_argument("--remote-timeout", type=float, default=d.remote_timeout, metavar="SECONDS")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add_model_arguments(parser)


def server_settings(args: argparse.Namespace):
    import dataclasses
    import os
    from pathlib import Path

    from ..assets import resolve_model_path
    from ..serve.settings import ServerSettings

    # Every limit flag is named after its ServerSettings field.
    special = {"model_name", "api_key", "cors_origins"}
    limits = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(ServerSettings)
        if f.name not in special and hasattr(args, f.name)
    }
    return ServerSettings(
        **limits,
        model_name=args.served_model_name or Path(resolve_model_path(args.model)).name,
        api_key=args.api_key or os.environ.get("INF_LLAVA_API_KEY") or None,
        cors_origins=tuple(args.cors_origin),
    )


def run(args: argparse.Namespace, open_browser: bool = False) -> int:
    import sys

    from ..serve.runner import run_server
    from ._common import engine_from_args

    settings = server_settings(args)  # validates the limits before the model loads
    engine = engine_from_args(args)
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    print(f"serving {settings.model_name!r}: API {url}/v1, web page {url}/", file=sys.stderr)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.5, webbrowser.open, args=(url + "/",)).start()
    run_server(engine, settings, host=args.host, port=args.port, log_level=args.log_level)
    print("server stopped", file=sys.stderr)
    return 0
