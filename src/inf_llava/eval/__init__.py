"""Evaluation on the paper's benchmarks with the official scoring (spec evaluation.md).

``get_benchmark(name)`` returns an object with the pure functions ``build_prompt(doc) -> str``,
``process_result(doc, prediction) -> dict`` and ``aggregate(results) -> dict`` (headline under ``score``, 0-100),
where ``doc`` is one row as the benchmark is distributed. Loading, batched generation, sharding, the LLaVA-Bench
judge and the report live in the sibling modules; ``inf-llava eval`` is the command line.
"""

from __future__ import annotations

from collections.abc import Callable

from .base import DEFAULT_PROFILE, PROFILES, Benchmark
from .benchmarks.ai2d import AI2D
from .benchmarks.llava_bench import LlavaBenchWild
from .benchmarks.mmbench import MMBench
from .benchmarks.mmmu import MMMU
from .benchmarks.okvqa import OKVQA
from .benchmarks.scienceqa import ScienceQAImg
from .benchmarks.seedbench import SeedBench

# Table 1 order of the paper.
_FACTORIES: dict[str, Callable[[str], Benchmark]] = {
    "scienceqa_img": ScienceQAImg,
    "okvqa": OKVQA,
    "seedbench": SeedBench,
    "mmbench_en": lambda profile: MMBench("en", profile),
    "mmbench_cn": lambda profile: MMBench("cn", profile),
    "ai2d": AI2D,
    "llava_bench_wild": LlavaBenchWild,
    "mmmu_val": MMMU,
}
BENCHMARKS: tuple[str, ...] = tuple(_FACTORIES)


def get_benchmark(name: str, profile: str = DEFAULT_PROFILE) -> Benchmark:
    """The benchmark registered under ``name`` (see :data:`BENCHMARKS`), scoring with ``profile``."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}") from None
    return factory(profile)


__all__ = ["BENCHMARKS", "DEFAULT_PROFILE", "PROFILES", "Benchmark", "get_benchmark"]
