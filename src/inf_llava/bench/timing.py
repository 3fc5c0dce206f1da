"""Timing helpers: median wall time over repeats after a warm-up, and the machine's matmul peak."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Mapping

import torch

from ..runtime import cpu_matrix_isa, cpu_supports_bf16


def median_seconds(
    fn: Callable[[], object], repeats: int = 3, warmup: int = 1, device: str | torch.device = "cpu"
) -> float:
    """Median wall time of ``fn`` after ``warmup`` calls; on CUDA the device is synchronised around each call, so
    queued kernels count where they run."""
    return interleaved_median_seconds({"fn": fn}, repeats, warmup, device)["fn"]


def interleaved_median_seconds(
    fns: Mapping[str, Callable[[], object]], repeats: int = 3, warmup: int = 1, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Median wall time of each function, timed in turns (a, b, a, b, ...) after ``warmup`` calls of each, so that
    a drift in the machine's speed (other tenants, clocks) affects every side of a ratio alike."""
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def matmul_peak_gflops(dtype: torch.dtype, device: str = "cpu", shapes=None, repeats: int = 3) -> float:
    """Best GFLOP/s of plain GEMMs of large and workload-like shapes in ``dtype`` (the machine's matmul peak)."""
    if shapes is None:
        shapes = [(4096, 4096, 4096), (5770, 1024, 4096), (5770, 4096, 1024), (2048, 2048, 2048)]
        if torch.device(device).type == "cuda":
            shapes.append((8192, 8192, 8192))  # a large GPU needs bigger products to reach its peak
    best = 0.0
    with torch.inference_mode():
        for m, k, n in shapes:
            a = torch.randn(m, k, dtype=dtype, device=device)
            b = torch.randn(k, n, dtype=dtype, device=device)
            seconds = median_seconds(lambda a=a, b=b: torch.mm(a, b), repeats=repeats, warmup=1, device=device)
            best = max(best, 2 * m * k * n / seconds / 1e9)
    return best


def machine_description() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_supports_bf16(),
        "cpu_matrix_isa": cpu_matrix_isa(),  # oneDNN's kernels (and bf16 bit-exactness between paths) depend on it
    }
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    import transformers

    info["transformers"] = transformers.__version__
    return info
