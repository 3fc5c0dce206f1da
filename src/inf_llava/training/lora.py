"""LoRA (and QLoRA) on the LLM only, through PEFT.

PEFT matches ``target_modules`` by name suffix, and the vision tower and the DEM have ``q_proj`` / ``k_proj`` /
``v_proj`` layers of their own: a suffix list such as ``["q_proj", "v_proj"]`` would silently put LoRA on CLIP (the
LLaVA#1647 failure). Here the targets are the *full names* of the LLM's Linear layers, so nothing outside
``model.language_model`` can match, and :func:`apply_lora` checks that afterwards.
"""

from __future__ import annotations

from torch import nn

from .stages import LORA_MARKER, MODULE_GROUPS

LLM_PREFIX = MODULE_GROUPS["language_model"][0]


def llm_linear_names(model: nn.Module) -> list[str]:
    """Full names of every ``nn.Linear`` inside the LLM decoder (``lm_head`` excluded, as LLaVA does)."""
    return [name for name, module in model.named_modules() if name.startswith(LLM_PREFIX) and type(module) is nn.Linear]


def apply_lora(model: nn.Module, r: int = 128, alpha: int = 256, dropout: float = 0.05):
    """Wrap ``model`` with PEFT LoRA adapters on the LLM's Linear layers; returns the ``PeftModel``.

    LoRA layers are injected into ``model`` in place, so ``model`` itself keeps working for forward passes.
    """
    from peft import LoraConfig, get_peft_model

    targets = llm_linear_names(model)
    if not targets:
        raise ValueError("found no Linear layers in the LLM to put LoRA on")
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    peft_model = get_peft_model(model, config)
    outside = [name for name in lora_module_names(model) if not name.startswith(LLM_PREFIX)]
    if outside:
        raise RuntimeError(f"LoRA reached modules outside the LLM: {outside[:3]}")
    return peft_model


def lora_module_names(model: nn.Module) -> list[str]:
    """Names of the modules that carry LoRA matrices."""
    names = set()
    for name, _ in model.named_parameters():
        if LORA_MARKER in name:
            names.add(name.split(LORA_MARKER)[0])
    return sorted(names)


def check_qlora_available() -> None:
    """QLoRA needs bitsandbytes' 4-bit kernels, i.e. a CUDA GPU; raise a one-line ValueError otherwise."""
    import torch

    if not torch.cuda.is_available():
        raise ValueError("--qlora needs a CUDA GPU (bitsandbytes 4-bit kernels); none is available, use --lora")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ValueError("--qlora needs bitsandbytes: pip install bitsandbytes") from None


def qlora_quantization_config():
    """4-bit NF4 for the LLM only: the image encoder (tower, DEM, projector) and ``lm_head`` stay in full precision
    (the official 4-bit path has no skip list and would quantise the DEM and projector too)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=["image_encoder", "lm_head"],
    )
