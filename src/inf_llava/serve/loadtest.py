"""A bounded load test of the server with the real ``openai`` client: N requests at concurrency C, latency
percentiles, throughput and every error counted (client retries are off, so nothing is hidden).

    python -m inf_llava.serve.loadtest --requests 200 --concurrency 16           # tiny model, own server
    python -m inf_llava.serve.loadtest --url http://127.0.0.1:8000 --model NAME  # an existing server
"""

from __future__ import annotations

import argparse
import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class LoadReport:
    requests: int
    concurrency: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    completion_tokens: int = 0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    @property
    def p50_ms(self) -> float:
        return 1000 * self.percentile(50)

    @property
    def p99_ms(self) -> float:
        return 1000 * self.percentile(99)

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_s) / self.wall_s

    def summary(self) -> str:
        ok = len(self.latencies_s)
        return (
            f"{self.requests} requests at concurrency {self.concurrency} (after a warm-up round): {ok} ok, "
            f"{len(self.errors)} errors, "
            f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, {self.throughput:.1f} req/s, "
            f"{self.completion_tokens / self.wall_s:.1f} generated tok/s ({self.wall_s:.2f} s wall)"
        )


def test_image_url(size: tuple[int, int] = (320, 200)) -> str:
    """A small synthetic PNG as a data: URL (shapes, so it is not a flat colour)."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((20, 20, 120, 120), fill="red")
    draw.rectangle((180, 60, 300, 180), fill="blue")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def run_load_test(
    base_url: str,
    model: str,
    *,
    requests: int = 200,
    concurrency: int = 16,
    max_tokens: int = 16,
    api_key: str = "none",
    image_url: str | None = None,
    timeout: float = 120.0,
    warmup: int | None = None,
    questions: list[str] | None = None,
    temperature: float | None = None,
) -> LoadReport:
    """Send ``requests`` chat completions (each with an image, questions varied) from ``concurrency`` threads,
    after ``warmup`` unmeasured ones (default: one round of ``concurrency``). ``temperature`` (default: the
    server's) goes with every request."""
    import openai

    client = openai.OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key, max_retries=0, timeout=timeout)
    image_url = image_url or test_image_url()
    warmup = concurrency if warmup is None else warmup
    questions = questions or [f"What is in the image? Answer {i}." for i in range(8)]
    sampling = {} if temperature is None else {"temperature": temperature}

    def one(i: int) -> tuple[float, int, str | None]:
        start = time.perf_counter()
        try:
            response = client.chat.completions.create(
                model=model,
                max_tokens=max_tokens,
                **sampling,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": image_url}},
                            {"type": "text", "text": questions[i % len(questions)]},
                        ],
                    }
                ],
            )
            return time.perf_counter() - start, response.usage.completion_tokens, None
        except openai.APIError as exc:
            return time.perf_counter() - start, 0, f"request {i}: {type(exc).__name__}: {exc}"

    report = LoadReport(requests=requests, concurrency=concurrency, wall_s=0.0)
    with ThreadPoolExecutor(concurrency) as pool:
        # Warm-up, not measured: opens the client's connections and pays the first-call costs of the server
        # (lazy imports, first generate call, allocator growth), which would otherwise dominate p99.
        warm_errors = [error for _, _, error in pool.map(one, range(warmup)) if error is not None]
        report.errors.extend(f"warm-up {error}" for error in warm_errors)
        start = time.perf_counter()
        results = list(pool.map(one, range(requests)))
    report.wall_s = time.perf_counter() - start
    for latency, tokens, error in results:
        if error is None:
            report.latencies_s.append(latency)
            report.completion_tokens += tokens
        else:
            report.errors.append(error)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=None, help="an existing server (default: start one with --model-dir)")
    parser.add_argument("--model", default=None, help="model id to request (default: the served one)")
    parser.add_argument("--model-dir", default=None, help="model to serve (default: the tiny preset, random)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument(
        "--compare-unbatched", action="store_true", help="also run with --max-batch-size 1 and report the ratio"
    )
    args = parser.parse_args(argv)
    load = dict(requests=args.requests, concurrency=args.concurrency, max_tokens=args.max_tokens)
    if args.url is not None:
        reports = [run_load_test(args.url, args.model or "inf-llava", **load)]
    else:
        from ..inference import InfLlavaEngine
        from .runner import start_background_server
        from .settings import ServerSettings

        if args.model_dir:
            engine = InfLlavaEngine.from_pretrained(args.model_dir)
        else:
            from ..presets import build_tiny

            engine = InfLlavaEngine(*build_tiny(seed=0))
        reports = []
        for batch_size in [args.max_batch_size] + ([1] if args.compare_unbatched else []):
            settings = ServerSettings(model_name="load-test", max_batch_size=batch_size)
            with start_background_server(engine, settings) as server:
                reports.append(run_load_test(server.url, "load-test", **load))
                scheduler, total = server.scheduler, args.requests + args.concurrency  # measured + warm-up round
                print(
                    f"server (max batch {batch_size}): {scheduler.batches_run} generate calls for {total} requests "
                    f"incl. warm-up (mean batch {total / max(1, scheduler.batches_run):.2f}, "
                    f"largest {scheduler.largest_batch})"
                )
    for report in reports:
        print(report.summary())
        for error in report.errors[:10]:
            print("  " + error)
    if len(reports) == 2:
        batched, alone = reports
        print(
            f"batching: {batched.throughput / alone.throughput:.2f}x the throughput of batch size 1, "
            f"p50 {batched.p50_ms / alone.p50_ms:.2f}x, p99 {batched.p99_ms / alone.p99_ms:.2f}x"
        )
    return 1 if any(report.errors for report in reports) else 0


if __name__ == "__main__":
    raise SystemExit(main())
