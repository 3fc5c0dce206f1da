"""``InfLlavaForConditionalGeneration`` for vLLM: this package's image encoder + vLLM's implementation of the LLM.

- Image side: :class:`~inf_llava.modeling.image_encoder.InfLlavaImageEncoder` as it is (vision tower built to the
  selected layer, DCM views in one tower call, DEM, low-resolution fusion, projector), so every image option of
  :class:`~inf_llava.InfLlavaConfig` behaves as in ``inf-llava`` and the features are the same numbers. It is
  replicated on every tensor-parallel rank and not quantized (as ``--load-in-4bit`` keeps it 16-bit).
- Language model: whatever vLLM registers for the checkpoint's text config (``LlamaForCausalLM`` for the released
  Llama-3 models, ``Qwen2ForCausalLM``, ...), built by vLLM with its paged attention, tensor parallelism and
  quantization; image features are scattered into the image-token slots by vLLM's ``embed_input_ids``.
- Weights: the checkpoint's names (``model.image_encoder.*``, ``model.language_model.*``, ``lm_head.*``, as
  ``save_pretrained`` and ``inf-llava convert-official`` write them) map onto the two parts; every parameter must be
  loaded (vLLM refuses a checkpoint that leaves one out).
- Decoding never produces the image token (its logit is -inf), as ``InfLlavaEngine`` suppresses it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import MultiModalEmbeddings, SupportsMultiModal
from vllm.model_executor.models.utils import (
    AutoWeightsLoader,
    WeightsMapper,
    init_vllm_registered_model,
    maybe_prefix,
)
from vllm.multimodal import MULTIMODAL_REGISTRY
from vllm.sequence import IntermediateTensors

from ...configuration import InfLlavaConfig
from ...modeling.image_encoder import InfLlavaImageEncoder
from ...processing.image_processing import pad_tiles
from ...processing.templates import IMAGE_PLACEHOLDER
from .processing import InfLlavaDummyInputsBuilder, InfLlavaMultiModalProcessor, InfLlavaProcessingInfo
from .support import language_model_architecture


@MULTIMODAL_REGISTRY.register_processor(
    InfLlavaMultiModalProcessor, info=InfLlavaProcessingInfo, dummy_inputs=InfLlavaDummyInputsBuilder
)
class InfLlavaForConditionalGeneration(nn.Module, SupportsMultiModal):
    hf_to_vllm_mapper = WeightsMapper(
        orig_to_new_prefix={
            "model.image_encoder.": "image_encoder.",
            "model.language_model.": "language_model.model.",
            "lm_head.": "language_model.lm_head.",
        }
    )

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_PLACEHOLDER
        raise ValueError(f"INF-LLaVA takes images only, not {modality}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config: InfLlavaConfig = vllm_config.model_config.hf_config
        self.config = config
        self.image_token_id = int(config.image_token_id)
        text_config = copy.deepcopy(config.text_config)
        text_config.tie_word_embeddings = bool(config.tie_word_embeddings)  # tying is the composite config's
        self.configure_mm_token_handling(vocab_size=text_config.vocab_size, mm_token_ids=[self.image_token_id])

        with self._mark_tower_model(vllm_config, "image"):
            self.image_encoder = InfLlavaImageEncoder(config).to(vllm_config.model_config.dtype)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=[language_model_architecture(text_config)],
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors

    # ---- images ----------------------------------------------------------------------------------------------------
    def embed_multimodal(self, **kwargs: object) -> MultiModalEmbeddings:
        """``pixel_values`` of the images in this batch (and, for dynamic grids, ``image_grids``) -> one
        ``(tokens_per_image, hidden)`` tensor per image."""
        pixel_values = kwargs.pop("pixel_values", None)
        image_grids = kwargs.pop("image_grids", None)
        if pixel_values is None:
            return []
        if image_grids is not None:  # dynamic grids: (K_i, 3, S, S) tiles per image, K_i from separate requests
            if isinstance(image_grids, (list, tuple)):
                image_grids = torch.stack([torch.as_tensor(g) for g in image_grids])
            if isinstance(pixel_values, (list, tuple)):
                pixel_values = pad_tiles(list(pixel_values))
        elif isinstance(pixel_values, (list, tuple)):
            pixel_values = torch.stack(list(pixel_values))
        encoder = self.image_encoder
        weight = next(encoder.parameters())
        return encoder(pixel_values.to(weight.device, weight.dtype), image_grids=image_grids)

    # ---- language model --------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: object,
    ) -> torch.Tensor | IntermediateTensors:
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        logits = self.language_model.compute_logits(hidden_states)
        if logits is not None and self.image_token_id < logits.shape[-1]:
            logits[..., self.image_token_id] = float("-inf")  # an image slot is never an answer token
        return logits

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights, mapper=self.hf_to_vllm_mapper)


__all__ = ["InfLlavaForConditionalGeneration"]
