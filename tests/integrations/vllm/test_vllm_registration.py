"""The plugin wiring and the one-line refusals, without starting an engine."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from transformers import CTRLConfig, LlamaConfig, Qwen2Config

pytestmark = pytest.mark.vllm


def test_the_entry_point_registers_the_architecture_with_vllm():
    from vllm import ModelRegistry

    from inf_llava.integrations import vllm as integration

    (plugin,) = [e for e in entry_points(group="vllm.general_plugins") if e.name == "inf_llava"]
    assert plugin.value == "inf_llava.integrations.vllm:register"
    plugin.load()()
    plugin.load()()  # idempotent: vLLM loads plugins in each of its processes, sometimes twice
    assert integration.ARCHITECTURE in ModelRegistry.get_supported_archs()
    model_cls = ModelRegistry._try_load_model_cls(integration.ARCHITECTURE)  # what vLLM imports in its workers
    assert model_cls.__module__ == "inf_llava.integrations.vllm.model"


def test_the_model_class_declares_what_it_supports():
    from vllm.model_executor.models.interfaces import supports_multimodal, supports_pp

    from inf_llava.integrations.vllm.model import InfLlavaForConditionalGeneration

    assert supports_multimodal(InfLlavaForConditionalGeneration)
    assert not supports_pp(InfLlavaForConditionalGeneration)  # vLLM refuses --pipeline-parallel-size > 1
    assert InfLlavaForConditionalGeneration.get_placeholder_str("image", 0) == "<image>"
    with pytest.raises(ValueError, match="images only"):
        InfLlavaForConditionalGeneration.get_placeholder_str("video", 0)


def test_language_model_architecture():
    from inf_llava.integrations.vllm.support import language_model_architecture

    assert language_model_architecture(LlamaConfig()) == "LlamaForCausalLM"
    assert language_model_architecture(Qwen2Config()) == "Qwen2ForCausalLM"
    with pytest.raises(ValueError) as error:
        language_model_architecture(CTRLConfig())
    message = str(error.value)
    assert "\n" not in message and "CTRLLMHeadModel" in message and "no vLLM implementation" in message
