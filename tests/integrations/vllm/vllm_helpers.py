"""Helpers of the vLLM tests (``make test-vllm``; marked ``vllm``, deselected from ``make test``): the demo
questions, and starting / closing an engine.

The tests run in the environment ``make test-vllm`` builds (``.venv-vllm``: the CPU build of vLLM, inf-llava installed
editable so its ``vllm.general_plugins`` entry point is live). Engines run in-process
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``) to halve their start-up; ``test_vllm_server.py`` runs the real multi-process
``vllm serve``. Each engine is closed when its module is done, so at most one holds memory at a time. (No conftest.py
here: a second module named ``conftest`` would shadow the one the other tests import helpers from.)
"""

from __future__ import annotations

import gc
import json
import os
from dataclasses import dataclass
from pathlib import Path

from inf_llava.assets import ASSETS_DIR, DEMO_MODEL_DIR

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB; the default reserves most of a 24 GiB machine
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

DEMO_DIR = DEMO_MODEL_DIR
DEMO_TEST_DIR = ASSETS_DIR / "demo-test"
MAX_TOKENS = 48
DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
# In bf16 a greedy answer may leave ours only where our own two best tokens are this close (nats): a logit of the
# demo model's size (about 8) rounds to steps of 0.0625 in bf16, and vLLM's fused CPU kernels round in another order
# than ours (which order depends on the CPU: oneDNN picks AVX512-BF16 or AMX kernels). Demo question test-000012 has
# a 0.008 margin in fp32 and left ours on an AMX/AVX512 CI machine; four more are under 0.25 (0.05 to 0.21).
BF16_TIE_NATS = 0.25


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
    import torch
    from vllm import LLM

    options = dict(dtype=DTYPES[dtype], enforce_eager=True, max_model_len=1024, max_num_seqs=8, seed=0)
    if torch.cuda.is_available():  # engines start one after another in this process (scripts/device-vllm.sh)
        options["gpu_memory_utilization"] = 0.3
    options.update(kwargs)
    return LLM(str(model), **options)


def close_llm(llm) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


def greedy(max_tokens: int = MAX_TOKENS):
    from vllm import SamplingParams

    return SamplingParams(temperature=0.0, max_tokens=max_tokens)


def same_answer_or_near_tie(dtype: str, ours, messages, images, expected, output) -> bool:
    """True when vLLM's greedy ``output`` is token-exact with ours (``expected``, a ``Completion``). Otherwise the
    only allowed difference is a bf16 near-tie: at the first token where the two part, vLLM took our second-best
    token and our top-2 margin there is under ``BF16_TIE_NATS``; anything else fails with what differed."""
    import torch

    got, want = list(output.outputs[0].token_ids), list(expected.token_ids)
    if output.outputs[0].text == expected.text and got[: len(want)] == want:
        return True
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    summary = f"{dtype}: vLLM {output.outputs[0].text!r} vs ours {expected.text!r}, first differing token {at}"
    assert dtype == "bf16" and at < min(len(got), len(want)), summary
    inputs = ours.inputs([messages], [images])
    prefix = torch.tensor([want[:at]], dtype=inputs["input_ids"].dtype, device=inputs["input_ids"].device)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], prefix], 1)
    inputs["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones_like(prefix)], 1)
    with torch.inference_mode():
        logprobs = ours.model(**inputs).logits[0, -1].float().log_softmax(-1)
    top = logprobs.topk(2)
    margin = float(top.values[0] - top.values[1])
    assert top.indices.tolist() == [want[at], got[at]] and margin < BF16_TIE_NATS, f"{summary}: margin {margin:.3f}"
    return False


def image_part(image) -> dict:
    return {"type": "image_pil", "image_pil": image}
