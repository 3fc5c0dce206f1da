"""VLMEvalKit integration: INF-LLaVA as a VLMEvalKit model, with this package's prompts for the paper's benchmarks.

VLMEvalKit has no plugin mechanism (no entry points): its ``run.py`` looks models up by name in the dict
``vlmeval.config.supported_VLM`` (name -> ``functools.partial`` of a model class) and, for ``--config`` JSON files,
by class name in ``vlmeval.vlm`` / ``vlmeval.api``. :func:`register` adds entries to both, so either works in the
same process:

    from inf_llava.eval.vlmeval_plugin import register
    register("INF-LLaVA-mine", model_path="./stage2")      # then run VLMEvalKit's run.py main() in this process

``python -m inf_llava.eval.vlmeval_plugin.run --model INF-LLaVA-demo --data MMBench_DEV_EN ...`` is VLMEvalKit's
``run.py`` with the models registered first (``--inf-llava NAME=PATH`` adds more). Nothing here imports VLMEvalKit
until :func:`register` runs.
"""

from __future__ import annotations

from functools import partial
from typing import Any

CLASS_NAME = "InfLlavaVLM"
# Registered by default: the shipped demo model and the released checkpoints (converted in memory on load).
DEFAULT_MODELS: dict[str, str | None] = {
    "INF-LLaVA-demo": None,
    "INF-LLaVA": "WeihuangLin/INF-LLaVA-sft",
    "INF-LLaVA-star": "WeihuangLin/INF_star-LLaVA-sft",
}


def register(name: str | None = None, model_path: str | None = None, **kwargs: Any) -> list[str]:
    """Add INF-LLaVA models to VLMEvalKit's ``supported_VLM`` (and ``InfLlavaVLM`` to ``vlmeval.vlm``).

    With no ``name``, registers :data:`DEFAULT_MODELS`; else ``name`` -> ``InfLlavaVLM(model_path=..., **kwargs)``
    (``dtype``, ``device``, ``template``, ``max_new_tokens``). Returns the names registered.
    """
    import vlmeval.config
    import vlmeval.vlm

    from .model import InfLlavaVLM

    setattr(vlmeval.vlm, CLASS_NAME, InfLlavaVLM)
    entries = {name: model_path} if name is not None else dict(DEFAULT_MODELS)
    for model_name, path in entries.items():
        vlmeval.config.supported_VLM[model_name] = partial(InfLlavaVLM, model_path=path, **kwargs)
    return list(entries)


__all__ = ["CLASS_NAME", "DEFAULT_MODELS", "register"]
