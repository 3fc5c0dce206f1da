"""`InfLlavaForConditionalGeneration`: image features scattered into image-token slots of any HF causal LM.

The prompt carries ``tokens_per_image`` copies of ``config.image_token_id`` per image (the processor expands each
``<image>`` placeholder); the model embeds the prompt, checks that the number of slots equals the number of image
features, writes the features into the slots (one ``masked_scatter``, no per-sample loop) and runs the LM. Images
are consumed in order: the i-th image of ``pixel_values`` fills the i-th block of slots in row-major (batch, position)
order. A dynamic-grid model (``grid="dynamic"``) also takes ``image_grids`` ``(N, 2)``, each image's ``(n_h, n_w)``,
next to its ``(N, K_max, 3, S, S)`` tile ``pixel_values`` (what the processor returns); ``generate()`` passes both to
the prefill only, like ``pixel_values``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache
from transformers.modeling_outputs import ModelOutput

from ..compat import CACHE_NAME, pop_cache_argument, slice_logits_to_keep
from ..configuration import InfLlavaConfig
from .enhancement import WindowCrossAttention
from .image_encoder import InfLlavaImageEncoder


@dataclass
class InfLlavaModelOutputWithPast(ModelOutput):
    last_hidden_state: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    image_features: torch.Tensor | None = None
    past_key_values: Cache | None = None  # the cache again, only on transformers < 5.20 (where generation reads it)


@dataclass
class InfLlavaCausalLMOutputWithPast(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    cache: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    image_features: torch.Tensor | None = None
    past_key_values: Cache | None = None  # the cache again, only on transformers < 5.20 (where generation reads it)


def _legacy_cache(cache: Cache | None) -> Cache | None:
    return cache if CACHE_NAME == "past_key_values" else None


class InfLlavaPreTrainedModel(PreTrainedModel):
    config: InfLlavaConfig
    config_class = InfLlavaConfig
    base_model_prefix = "model"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_compile_fullgraph = False
    _no_split_modules = ["InfLlavaImageEncoder"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # The tower and the LM are PreTrainedModels and initialise themselves. What reaches this method are the DEM,
        # the projector and lm_head. The DEM and projector get PyTorch's default init, as in the official code
        # (they are built outside HF's init there); the DEM's four attention projections start as copies of one
        # Linear (see `initialize_weights`). Guarded init functions leave loaded weights untouched.
        if module is getattr(self, "lm_head", None):
            init.normal_(module.weight, mean=0.0, std=getattr(self.config.text_config, "initializer_range", 0.02))
        elif isinstance(module, nn.Linear):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                bound = 1 / math.sqrt(module.in_features) if module.in_features > 0 else 0
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)

    @torch.no_grad()
    def initialize_weights(self) -> None:
        super().initialize_weights()
        # HF skips parameter-less container modules, so the official "four deep copies of one Linear" start of the
        # DEM attention is applied here; `init.copy_` leaves loaded (flagged) parameters alone.
        for module in self.modules():
            if isinstance(module, WindowCrossAttention):
                for other in (module.k_proj, module.v_proj, module.o_proj):
                    init.copy_(other.weight, module.q_proj.weight)
                    init.copy_(other.bias, module.q_proj.bias)


class InfLlavaModel(InfLlavaPreTrainedModel):
    """Image encoder + LM backbone (no LM head)."""

    def __init__(self, config: InfLlavaConfig):
        super().__init__(config)
        if config.image_token_id is None:
            raise ValueError("InfLlavaConfig.image_token_id must be set to build a model")
        self.image_encoder = InfLlavaImageEncoder(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_image_features(self, pixel_values: torch.Tensor, image_grids: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, h, w)`` (or dynamic-grid tiles with ``image_grids``) ``-> (B, tokens_per_image, H)``."""
        return self.image_encoder(pixel_values, image_grids)

    def image_slot_mask(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor) -> torch.Tensor:
        """``(batch, seq)`` boolean mask of image-token slots."""
        if input_ids is not None:
            return input_ids == self.config.image_token_id
        token = torch.tensor(self.config.image_token_id, device=inputs_embeds.device)
        return (inputs_embeds == self.get_input_embeddings()(token)).all(-1)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool | None = None,
        image_features: torch.Tensor | None = None,
        image_grids: torch.Tensor | None = None,
        **kwargs,
    ) -> InfLlavaModelOutputWithPast:
        cache = pop_cache_argument(cache, kwargs)
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)
        if image_features is None and pixel_values is not None:
            image_features = self.get_image_features(pixel_values, image_grids)
        slots = self.image_slot_mask(input_ids, inputs_embeds)
        n_slots = int(slots.sum())
        n_features = 0 if image_features is None else image_features.shape[0] * image_features.shape[1]
        decoding = image_features is None and cache is not None and cache.get_seq_length() > 0
        if n_slots != n_features and not decoding:  # a generated image token is just an embedding
            n_images = 0 if image_features is None else image_features.shape[0]
            raise ValueError(
                f"image features and image tokens do not match: the prompt has {n_slots} image-token slots "
                f"({n_slots / self.config.tokens_per_image:g} images of {self.config.tokens_per_image} tokens) "
                f"but {n_images} images gave {n_features} features"
            )
        if n_features:
            features = image_features.reshape(-1, image_features.shape[-1]).to(
                inputs_embeds.device, inputs_embeds.dtype
            )
            inputs_embeds = inputs_embeds.masked_scatter(slots.unsqueeze(-1).to(inputs_embeds.device), features)
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=use_cache,
            **{CACHE_NAME: cache},
            **kwargs,
        )
        cache = getattr(outputs, CACHE_NAME, None)
        return InfLlavaModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=cache,
            hidden_states=getattr(outputs, "hidden_states", None),
            attentions=getattr(outputs, "attentions", None),
            image_features=image_features,
            past_key_values=_legacy_cache(cache),
        )


class InfLlavaForConditionalGeneration(InfLlavaPreTrainedModel, GenerationMixin):
    """INF-LLaVA with a language-modelling head; ``generate()`` comes from HF's GenerationMixin (KV cache included).

    Example::

        processor = InfLlavaProcessor.from_pretrained(path)
        model = InfLlavaForConditionalGeneration.from_pretrained(path)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}]
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(images=[image], text=prompt, return_tensors="pt")
        out = model.generate(**inputs, max_new_tokens=32, do_sample=False)
    """

    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}

    def __init__(self, config: InfLlavaConfig):
        super().__init__(config)
        self.model = InfLlavaModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """HF ``from_pretrained`` with two additions.

        - Without a ``dtype`` argument the weights load in float32 (the transformers 4.x default the official code
          was written against; transformers 5 would keep the checkpoint's bf16). ``dtype="auto"`` keeps the stored
          dtype, as in HF.
        - An original INF-LLaVA checkpoint (``model_type: llava_llama``, a directory or hub id) is converted in
          memory (logged); ``inf-llava convert-official`` saves a converted copy instead.
        """
        if "dtype" not in kwargs and "torch_dtype" not in kwargs:
            kwargs["dtype"] = torch.float32
        if pretrained_model_name_or_path is not None and kwargs.get("config") is None:
            from ..conversion.convert import load_official_in_memory, official_checkpoint_directory

            source = official_checkpoint_directory(pretrained_model_name_or_path, kwargs)
            if source is not None:
                plan = load_official_in_memory(source, kwargs)
                model = super().from_pretrained(
                    None, *model_args, config=plan.config, state_dict=plan.state_dict(), **kwargs
                )
                model.generation_config = plan.generation_config
                return model
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.lm_head = value

    @property
    def image_encoder(self) -> InfLlavaImageEncoder:
        return self.model.image_encoder

    @property
    def language_model(self) -> nn.Module:
        return self.model.language_model

    def get_image_features(self, pixel_values: torch.Tensor, image_grids: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, 3, h, w)`` (or dynamic-grid tiles with ``image_grids``) ``-> (B, tokens_per_image, H)``: what the LLM
        receives for each image."""
        return self.model.get_image_features(pixel_values, image_grids)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        image_features: torch.Tensor | None = None,
        image_grids: torch.Tensor | None = None,
        **kwargs,
    ) -> InfLlavaCausalLMOutputWithPast:
        cache = pop_cache_argument(cache, kwargs)
        outputs = self.model(
            input_ids=input_ids,
            pixel_values=pixel_values,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            image_features=image_features,
            image_grids=image_grids,
            **kwargs,
        )
        hidden_states = slice_logits_to_keep(outputs.last_hidden_state, logits_to_keep)
        logits = self.lm_head(hidden_states)
        loss = None
        if labels is not None:
            loss = self.loss_function(
                logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size, **kwargs
            )
        return InfLlavaCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_features=outputs.image_features,
            past_key_values=_legacy_cache(outputs.cache),
        )
