"""INF-LLaVA on vLLM: an out-of-tree model for ``vllm serve`` and ``vllm.LLM``.

Installing inf-llava beside vLLM is enough: vLLM loads :func:`register` through its ``vllm.general_plugins`` entry
point in every process it starts, so a converted checkpoint directory (``architectures:
["InfLlavaForConditionalGeneration"]``) serves with ``vllm serve DIR``. The language model is vLLM's own
implementation of the checkpoint's LLM (Llama, Qwen2, ...: paged attention, tensor parallelism, quantization); the
image side is this package's encoder (vision tower, DCM, DEM, projector), so image features are the ones
``inf-llava`` computes. Prompts render with the checkpoint's named template (:attr:`InfLlavaProcessor.chat_template`)
and each image takes the model's ``tokens_per_image`` slots (:mod:`inf_llava.geometry`).

Tested with vLLM 0.32 (docs/serving.md, "Serving at scale with vLLM").
"""

from __future__ import annotations

ARCHITECTURE = "InfLlavaForConditionalGeneration"
MODEL_CLASS = "inf_llava.integrations.vllm.model:InfLlavaForConditionalGeneration"
TESTED_VLLM = "0.32"


def register() -> None:
    """The ``vllm.general_plugins`` entry point: registers the model with vLLM and ``inf_llava`` with the
    transformers Auto classes (config, processor) in the calling process. Idempotent."""
    from vllm import ModelRegistry

    import inf_llava  # noqa: F401 - registers model_type "inf_llava" with transformers

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)


__all__ = ["ARCHITECTURE", "MODEL_CLASS", "TESTED_VLLM", "register"]
