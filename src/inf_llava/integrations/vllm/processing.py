"""vLLM's multimodal processing for INF-LLaVA: this package's processor makes the pixels, vLLM's prompt replacement
makes the image slots.

vLLM tokenizes prompts itself (chat requests through :attr:`InfLlavaProcessor.chat_template`, which writes one
image token per image; raw text prompts as they are, with ``<image>`` marking images) and calls the HF processor on
the images alone. Each image's marker (the image token, or the ``<image>`` text) is then replaced by
``tokens_per_image`` image tokens, the count :class:`~inf_llava.geometry.Geometry` defines for the model's config
(the same number the model's encoder returns features for and ``InfLlavaProcessor.encode`` writes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from transformers import BatchFeature
from vllm.config.multimodal import MultiModalDummyOptions
from vllm.multimodal.inputs import MultiModalFieldConfig, MultiModalKwargsItems
from vllm.multimodal.parse import ImageSize, MultiModalDataItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
    PromptUpdate,
)

from ...configuration import InfLlavaConfig
from ...processing.processor import InfLlavaProcessor


class InfLlavaProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> InfLlavaConfig:
        return self.ctx.get_hf_config(InfLlavaConfig)

    def get_hf_processor(self, **kwargs: object) -> InfLlavaProcessor:
        return self.ctx.get_hf_processor(InfLlavaProcessor, **kwargs)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None}  # any number of images per prompt, each in its own slots

    def get_num_image_tokens(self) -> int:
        """Image-token slots per image: the geometry's count, whatever the image size."""
        return self.get_hf_config().geometry.tokens_per_image

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        return {"image": self.get_num_image_tokens()}

    def get_image_size_with_most_features(self) -> ImageSize:
        """The image that costs the encoder most (vLLM profiles memory with it): the high-resolution size, or for
        dynamic grids the canvas of the candidate grid with the most tiles (the token count is the same for all)."""
        geometry = self.get_hf_config().geometry
        if geometry.is_dynamic:
            grid_h, grid_w = max(geometry.grids, key=lambda grid: (grid[0] * grid[1], grid))
            return ImageSize(width=grid_w * geometry.view_size, height=grid_h * geometry.view_size)
        height, width = geometry.high_res_size
        return ImageSize(width=width, height=height)


class InfLlavaDummyInputsBuilder(BaseDummyInputsBuilder[InfLlavaProcessingInfo]):
    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return self.info.get_hf_processor().image_token * mm_counts.get("image", 0)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options: MultiModalDummyOptions):
        size = self.info.get_image_size_with_most_features()
        images = self._get_dummy_images(
            width=size.width,
            height=size.height,
            num_images=mm_counts.get("image", 0),
            overrides=mm_options.get("image") if mm_options else None,
        )
        return {"image": images}


class InfLlavaMultiModalProcessor(BaseMultiModalProcessor[InfLlavaProcessingInfo]):
    def _get_mm_fields_config(
        self, hf_inputs: BatchFeature, hf_processor_mm_kwargs: Mapping[str, object]
    ) -> Mapping[str, MultiModalFieldConfig]:
        fields = {"pixel_values": MultiModalFieldConfig.batched("image")}
        if "image_grids" in hf_inputs:  # dynamic grids: each image's (n_h, n_w), and its tiles in pixel_values
            fields["image_grids"] = MultiModalFieldConfig.batched("image")
        return fields

    def _get_prompt_updates(
        self,
        mm_items: MultiModalDataItems,
        hf_processor_mm_kwargs: Mapping[str, object],
        out_mm_kwargs: MultiModalKwargsItems,
    ) -> Sequence[PromptUpdate]:
        processor = self.info.get_hf_processor(**hf_processor_mm_kwargs)
        image_token_id = self.info.get_hf_config().image_token_id
        slots = [image_token_id] * self.info.get_num_image_tokens()
        # Alternatives per image, tried in order: the image token the chat template writes, else the text marker
        # of raw prompts (vLLM finds it in the decoded text when its tokens merged with their neighbours, and
        # re-tokenizes around the slots).
        marker = self.info.get_tokenizer().encode(processor.image_placeholder, add_special_tokens=False)
        return [
            PromptReplacement(modality="image", target=[image_token_id], replacement=slots),
            PromptReplacement(modality="image", target=marker, replacement=slots),
        ]


__all__ = ["InfLlavaDummyInputsBuilder", "InfLlavaMultiModalProcessor", "InfLlavaProcessingInfo"]
