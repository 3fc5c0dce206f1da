"""Fixtures of the vLLM tests (``make test-vllm``; marked ``vllm``, deselected from ``make test``).

They run in the environment ``make test-vllm`` builds (``.venv-vllm``: the CPU build of vLLM, inf-llava installed
editable so its ``vllm.general_plugins`` entry point is live). Engines run in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) to halve their start-up; ``test_server.py`` runs the real multi-process
``vllm serve``. Each engine is closed when its module is done, so at most one holds memory at a time.
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes a large share of a 24 GiB machine
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from inf_llava.assets import ASSETS_DIR, DEMO_MODEL_DIR  # noqa: E402

DEMO_TEST_DIR = ASSETS_DIR / "demo-test"
MAX_TOKENS = 48
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Question:
    id: str
    image: Path
    text: str
    answers: tuple[str, ...]


def demo_questions(count: int = 24) -> list[Question]:
    """The first ``count`` questions of the shipped held-out split (all three kinds occur among them)."""
    records = json.loads((DEMO_TEST_DIR / "test.json").read_text())[:count]
    out = []
    for record in records:
        question = record["conversations"][0]["value"].replace("<image>", "").strip()
        out.append(Question(record["id"], DEMO_TEST_DIR / record["image"], question, tuple(record["answers"])))
    return out


def start_llm(model: str | Path, dtype: str = "fp32", **kwargs):
    from vllm import LLM

    options = dict(dtype=DTYPES[dtype], enforce_eager=True, max_model_len=1024, max_num_seqs=8, seed=0)
    options.update(kwargs)
    return LLM(str(model), **options)


def close_llm(llm) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


def greedy(max_tokens: int = MAX_TOKENS):
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=max_tokens)


def image_part(image) -> dict:
    return {"type": "image_pil", "image_pil": image}


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO_MODEL_DIR
