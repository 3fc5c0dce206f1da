"""Loading a model for inference: dtype, device, multi-device placement and bitsandbytes quantization.

The options users of other LLaVA projects keep tripping over, handled in one place:

- ``device_map="auto"`` (accelerate) places whole blocks on devices: the image encoder (tower + DEM + projector) is
  one unsplittable block (``_no_split_modules``) and the LM's decoder layers are others; the model moves the image
  features to the device of the LM's embeddings before splicing them in, so no "tensors on different devices" error.
- ``quantization="4bit" | "8bit"`` quantizes the *language model's* linear layers with bitsandbytes while the vision
  tower, DEM, projector and LM head stay in the 16-bit compute dtype (``llm_int8_skip_modules``); it needs CUDA and
  says so in one line instead of failing deep inside bitsandbytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .errors import ModelLoadError
from .modeling.inf_llava import InfLlavaForConditionalGeneration
from .runtime import resolve_device, resolve_dtype

QUANTIZATIONS = ("4bit", "8bit")
# Modules kept in the compute dtype when the LM is quantized (prefix / suffix patterns of transformers' quantizers).
QUANTIZATION_SKIP_MODULES = ("model.image_encoder", "lm_head")


def quantization_config(quantization: str, compute_dtype: torch.dtype):
    """The :class:`transformers.BitsAndBytesConfig` for ``"4bit"`` / ``"8bit"`` (LM only; see the module doc)."""
    from transformers import BitsAndBytesConfig

    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}; choose 4bit or 8bit")
    skip = list(QUANTIZATION_SKIP_MODULES)
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            llm_int8_skip_modules=skip,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)


def check_quantization_supported(quantization: str) -> None:
    """One-line errors for the usual reasons bitsandbytes loading fails."""
    if not torch.cuda.is_available():
        raise ModelLoadError(
            f"--load-in-{quantization} needs a CUDA GPU (bitsandbytes quantization); none is available here. "
            "Load without quantization (e.g. --dtype bf16) instead"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ModelLoadError(f"--load-in-{quantization} needs bitsandbytes: pip install bitsandbytes") from None


def load_model(
    path: str | os.PathLike,
    *,
    dtype: str | torch.dtype = "auto",
    device: str | torch.device | None = None,
    device_map: str | dict[str, Any] | None = None,
    quantization: str | None = None,
    **kwargs: Any,
) -> InfLlavaForConditionalGeneration:
    """An :class:`InfLlavaForConditionalGeneration` in eval mode, placed and quantized as asked.

    Args:
        path: a model directory (or hub id) saved with ``save_pretrained``.
        dtype: ``auto`` (bf16 where the hardware supports it, else fp16 on GPUs / fp32 on CPUs), ``bf16``, ``fp16``,
            ``fp32`` or a torch dtype.
        device: where to put the whole model (ignored with ``device_map``).
        device_map: ``"auto"`` / ``"balanced"`` / ``"sequential"`` or an explicit accelerate map.
        quantization: ``None``, ``"4bit"`` or ``"8bit"`` (bitsandbytes, CUDA only).
    """
    local = Path(path)
    if local.exists() and not (local / "config.json").is_file():
        raise ModelLoadError(f"{path}: not a model directory (no config.json)")
    device_obj = resolve_device(device)
    if quantization is not None:
        if quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization {quantization!r}; choose 4bit or 8bit")
        check_quantization_supported(quantization)
        device_obj = torch.device("cuda")
    torch_dtype = resolve_dtype(dtype, device_obj)
    if quantization is not None:
        kwargs["quantization_config"] = quantization_config(quantization, torch_dtype)
        device_map = device_map or "auto"
    if device_map is not None:
        kwargs["device_map"] = device_map
    model = InfLlavaForConditionalGeneration.from_pretrained(str(path), dtype=torch_dtype, **kwargs)
    if device_map is None:
        model = model.to(device_obj)
    return model.eval()


__all__ = ["QUANTIZATIONS", "QUANTIZATION_SKIP_MODULES", "check_quantization_supported", "load_model"]
