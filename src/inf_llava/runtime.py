"""Device and dtype choices: the only place that inspects the hardware."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 matmul support (AVX512-BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


_MATRIX_ISAS = ("other", "AVX2", "AVX512", "AVX512-BF16", "AMX")  # weakest first


def cpu_matrix_isa() -> str:
    """The best matrix instructions oneDNN may use here, which decide the kernels it picks (and so which bf16
    results are bit-identical between two of its code paths): ``"AMX"``, ``"AVX512-BF16"``, ``"AVX512"``,
    ``"AVX2"`` or ``"other"``: the CPU's, capped by ``ONEDNN_MAX_CPU_ISA`` where that is set."""
    flags = cpu_flags()
    isa = "other"
    for name, flag in (("AMX", "amx_bf16"), ("AVX512-BF16", "avx512_bf16"), ("AVX512", "avx512f"), ("AVX2", "avx2")):
        if flag in flags:
            isa = name
            break
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap not in ("ALL", "DEFAULT"):
        if "AMX" in cap:
            capped = "AMX"
        elif "BF16" in cap or "FP16" in cap or cap.startswith("AVX10"):
            capped = "AVX512-BF16"
        elif cap.startswith("AVX512"):
            capped = "AVX512"
        elif cap.startswith("AVX2"):
            capped = "AVX2"
        else:
            capped = "other"
        isa = min(isa, capped, key=_MATRIX_ISAS.index)
    return isa


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None = "auto", device: str | torch.device | None = None) -> torch.dtype:
    """``auto`` picks bf16 on GPUs that support it (else fp16) and on CPUs with AVX512-BF16/AMX, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        device = resolve_device(device)
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; choose auto, bf16, fp16 or fp32") from None


@functools.cache
def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process heap instead of returning it to the OS after every large tensor.

    glibc serves allocations above 32 MB with fresh ``mmap`` pages, so every large activation (e.g. a 94 MB MLP
    hidden state of a CLIP-L pass) pays for page faults on first touch; that made element-wise ops 4-10x slower than
    their memory bandwidth allows. Raising the mmap and trim thresholds lets the heap recycle those pages. Called by
    the CLI entry points (never at import); returns False where glibc's ``mallopt`` is unavailable.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 1 << 30) == 1
        return bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1) == 1 and ok)
    except (OSError, AttributeError):
        return False
