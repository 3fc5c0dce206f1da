"""runtime: what it reads off the hardware (CPU flags, the matrix instructions oneDNN may use) and the dtype choice."""

import pytest
import torch

from inf_llava import runtime


@pytest.mark.parametrize(
    "flags, cap, expected",
    [
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}, "", "AMX"),  # Intel Sapphire Rapids
        ({"avx2", "avx512f", "avx512_bf16"}, "", "AVX512-BF16"),  # AMD EPYC Zen 4
        ({"avx2", "avx512f"}, "", "AVX512"),
        ({"avx2"}, "", "AVX2"),  # AMD Zen 2/3
        (set(), "", "other"),
        ({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}, "AVX512_CORE_BF16", "AVX512-BF16"),  # capped by oneDNN's env
        ({"avx2", "avx512f", "avx512_bf16"}, "avx2", "AVX2"),
        ({"avx2", "avx512f", "avx512_bf16"}, "AVX512_CORE_AMX", "AVX512-BF16"),  # a cap never adds instructions
        ({"avx2", "avx512f", "avx512_bf16"}, "ALL", "AVX512-BF16"),
    ],
)
def test_cpu_matrix_isa(monkeypatch, flags, cap, expected):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert runtime.cpu_matrix_isa() == expected


def test_auto_dtype_on_cpu_follows_bf16_support(monkeypatch):
    for flags, dtype in (({"avx512_bf16"}, torch.bfloat16), ({"amx_bf16"}, torch.bfloat16), ({"avx2"}, torch.float32)):
        monkeypatch.setattr(runtime, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert runtime.resolve_dtype("auto", "cpu") == dtype


def test_cpu_flags_come_from_proc_cpuinfo():
    text = open("/proc/cpuinfo").read()
    line = next(line for line in text.splitlines() if line.startswith("flags"))
    assert runtime.cpu_flags() == frozenset(line.split(":", 1)[1].split())
