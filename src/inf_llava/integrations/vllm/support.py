"""What the vLLM integration can serve: the language model's vLLM architecture, or a one-line refusal."""

from __future__ import annotations

from transformers import PretrainedConfig


def language_model_architecture(text_config: PretrainedConfig) -> str:
    """The vLLM architecture of the LLM (``LlamaForCausalLM`` for the released models): the text config's own
    ``architectures`` entry, else transformers' causal-LM class for its ``model_type``. Raises a one-line ValueError
    when vLLM has no implementation of it."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from vllm import ModelRegistry

    model_type = getattr(text_config, "model_type", None)
    names = list(getattr(text_config, "architectures", None) or [])
    if not names and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        names = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    supported = ModelRegistry.get_supported_archs()
    for name in names:
        if name in supported:
            return name
    wanted = ", ".join(names) or f"a causal LM for model_type {model_type!r}"
    raise ValueError(
        f"this INF-LLaVA's language model ({wanted}) has no vLLM implementation in this vLLM release; serve it with "
        "`inf-llava serve` instead"
    )


__all__ = ["language_model_architecture"]
