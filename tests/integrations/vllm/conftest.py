"""Fixtures of the vLLM tests (``make test-vllm``; marked ``vllm``, deselected from ``make test``).

They run in the environment ``make test-vllm`` builds (``.venv-vllm``: the CPU build of vLLM, inf-llava installed
editable so its ``vllm.general_plugins`` entry point is live). Engines run in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) to halve their start-up; ``test_server.py`` runs the real multi-process
``vllm serve``. Each engine is closed when its module is done, so at most one holds memory at a time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default takes a large share of a 24 GiB machine
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

from inf_llava.assets import DEMO_MODEL_DIR  # noqa: E402


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return DEMO_MODEL_DIR
