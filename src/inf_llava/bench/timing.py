"""Timing helpers: median wall time over repeats after a warm-up, and the machine's matmul peak."""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable

import torch

from ..runtime import cpu_supports_bf16


def median_seconds(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak_gflops(dtype: torch.dtype, device: str = "cpu", shapes=None, repeats: int = 3) -> float:
    """Best GFLOP/s of plain GEMMs of large and workload-like shapes in ``dtype`` (the machine's matmul peak)."""
    shapes = shapes or [(4096, 4096, 4096), (5770, 1024, 4096), (5770, 4096, 1024), (2048, 2048, 2048)]
    best = 0.0
    with torch.inference_mode():
        for m, k, n in shapes:
            a = torch.randn(m, k, dtype=dtype, device=device)
            b = torch.randn(k, n, dtype=dtype, device=device)
            seconds = median_seconds(lambda a=a, b=b: torch.mm(a, b), repeats=repeats, warmup=1)
            best = max(best, 2 * m * k * n / seconds / 1e9)
    return best


def machine_description() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_bf16": cpu_supports_bf16(),
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
