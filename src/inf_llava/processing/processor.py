"""`InfLlavaProcessor`: image processor + tokenizer + conversation template, HF ``ProcessorMixin`` compatible.

``apply_chat_template(messages, add_generation_prompt=True)`` renders HF-style multimodal messages with the named
template (``llama3`` by default); ``processor(images=..., text=..., return_tensors="pt")`` expands every ``<image>``
to ``tokens_per_image`` slots of ``image_token_id`` and returns ``input_ids``, ``attention_mask`` and
``pixel_values`` (plus ``image_grids`` for a dynamic-grid model: each image's ``(n_h, n_w)``). Batches are padded on
the left (what generation needs) unless ``padding_side="right"``.
The geometry saved with the processor is the same one the model's config derives, so the slot count and the
model's feature count cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import ProcessorMixin
from transformers.image_processing_utils import BatchFeature

from ..geometry import geometry_from_dict
from .image_processing import InfLlavaImageProcessor, _as_image_list
from .templates import IMAGE_PLACEHOLDER, TEMPLATES, RenderedPrompt, get_template
from .tokenization import IGNORE_INDEX, EncodedPrompt, encode_prompt


class InfLlavaProcessor(ProcessorMixin):
    """Turns images and conversations into model inputs.

    Args:
        image_processor: an :class:`InfLlavaImageProcessor`.
        tokenizer: the LM's (fast) tokenizer.
        geometry: ``{"grid_h", "grid_w", "view_size", "patch_size"}`` of the model (see :class:`Geometry`), or
            ``{"grids", "view_size", "patch_size"}`` for dynamic grids (see :class:`DynamicGeometry`).
        image_token: the vocabulary token whose id fills image slots.
        template: conversation template name (``llama3``, ``plain``, ``vicuna_v1``, ``chatml``).
        system_prompt: overrides the template's default system message.
        image_placeholder: the text marker of an image in prompts (``<image>``, as in the official code).
        chat_template: ignored; ``chat_template`` is always the named template written out as Jinja (saved as
            ``chat_template.jinja`` for engines and tools that read only that file).
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        geometry: Mapping[str, int] | None = None,
        image_token: str | None = None,
        template: str = "llama3",
        system_prompt: str | None = None,
        image_placeholder: str = IMAGE_PLACEHOLDER,
        chat_template: str | None = None,
        **kwargs: Any,
    ):
        if geometry is None:
            raise ValueError("InfLlavaProcessor needs the model geometry (grid, view size, patch size)")
        self.geometry = dict(geometry_from_dict(geometry).to_dict())
        if template not in TEMPLATES:
            raise ValueError(f"unknown template {template!r}; available: {', '.join(TEMPLATES)}")
        self.template = template
        self.system_prompt = system_prompt
        self.image_placeholder = image_placeholder
        if image_token is None:
            raise ValueError("InfLlavaProcessor needs image_token (the token whose id fills image slots)")
        self.image_token = image_token
        # Prompts are rendered by the named template; `chat_template` (saved as chat_template.jinja) is derived from
        # it, so a template passed in or loaded is not used (see the property).
        super().__init__(image_processor, tokenizer, chat_template=chat_template)
        grids = self.geometry.get("grids")
        if getattr(image_processor, "grids", None) != grids:
            raise ValueError(
                f"the image processor's grids ({getattr(image_processor, 'grids', None)}) are not the model "
                f"geometry's ({grids})"
            )
        image_token_id = tokenizer.convert_tokens_to_ids(image_token)
        if image_token_id is None or image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"image token {image_token!r} is not in the tokenizer's vocabulary")
        self.image_token_id = int(image_token_id)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs: Any):
        """HF ``from_pretrained``; on an original INF-LLaVA (``llava_llama``) checkpoint, the processor its conversion
        would save (official training-path preprocessing; ``processor_mode="base"`` for the inference path)."""
        from ..conversion.convert import official_checkpoint_directory, plan_conversion

        mode = kwargs.pop("processor_mode", None)
        source = official_checkpoint_directory(pretrained_model_name_or_path, kwargs)
        if source is not None:
            return plan_conversion(source, processor_mode=mode or "high_res").processor
        if mode is not None:
            raise ValueError("processor_mode applies only to original llava_llama checkpoints")
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    # ---- Jinja form of the template ------------------------------------------------------------------------------
    @property
    def chat_template(self) -> str | None:
        """The named template as a Jinja chat template, for engines that render prompts with Jinja (vLLM).

        Derived from ``template`` and ``system_prompt`` (never stored on its own, so it cannot drift from them):
        tokenizing its output without special tokens gives the ids :meth:`encode` gives for
        :meth:`apply_chat_template`'s text, except that each image is one ``image_token`` for the engine to expand
        to ``tokens_per_image`` slots (see :mod:`~inf_llava.processing.jinja_template`). A chat template passed in
        or saved beside the processor (e.g. the LLM tokenizer's own) is ignored, as :meth:`apply_chat_template`
        ignores it.
        """
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is None:  # during __init__
            return None
        from .jinja_template import jinja_chat_template

        bos = tokenizer.bos_token_id
        adds_bos = bos is not None and tokenizer("x", add_special_tokens=True)["input_ids"][:1] == [bos]
        return jinja_chat_template(
            get_template(self.template),
            image_token=self.image_token,
            bos_token=tokenizer.bos_token if adds_bos else None,
            system=self.system_prompt,
            image_placeholder=self.image_placeholder,
        )

    @chat_template.setter
    def chat_template(self, value: str | None) -> None:
        pass  # see the getter: the template is named, a Jinja template given to ProcessorMixin is not used

    # ---- geometry ------------------------------------------------------------------------------------------------
    @property
    def tokens_per_image(self) -> int:
        return geometry_from_dict(self.geometry).tokens_per_image

    def with_geometry(self, geometry) -> InfLlavaProcessor:
        """A processor for another geometry of the same model family (e.g. ``config.geometry`` after switching a
        saved model to ``grid="dynamic"``): same tokenizer, template and image statistics, high-resolution path."""
        image_processor = type(self.image_processor).for_geometry(geometry, **self.image_processor.settings())
        return type(self)(
            image_processor=image_processor,
            tokenizer=self.tokenizer,
            geometry=geometry.to_dict(),
            image_token=self.image_token,
            template=self.template,
            system_prompt=self.system_prompt,
            image_placeholder=self.image_placeholder,
            chat_template=self.chat_template,
        )

    # ---- text ----------------------------------------------------------------------------------------------------
    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        template: str | None = None,
    ) -> RenderedPrompt:
        """Render one conversation with its assistant spans (for training labels)."""
        return get_template(template or self.template).render(
            messages, add_generation_prompt=add_generation_prompt, system=self.system_prompt
        )

    def apply_chat_template(
        self,
        conversation: Sequence[Mapping[str, Any]] | Sequence[Sequence[Mapping[str, Any]]],
        add_generation_prompt: bool = False,
        tokenize: bool = False,
        template: str | None = None,
        return_tensors: str | None = "pt",
        images: Any = None,
        **kwargs: Any,
    ) -> Any:
        """Render HF-style messages (one conversation or a batch) to prompt text; with ``tokenize=True`` return
        model inputs (``images`` then supplies the pictures, in order)."""
        if kwargs.pop("return_dict", None) is False and tokenize:
            raise ValueError("tokenize=True returns a dict of model inputs")
        if kwargs.pop("chat_template", None) is not None:
            raise ValueError("InfLlavaProcessor uses named templates; pass template='llama3' (or plain, ...)")
        if kwargs:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        batched = bool(conversation) and not isinstance(conversation[0], Mapping)
        conversations = conversation if batched else [conversation]
        texts = [self.render(c, add_generation_prompt, template).text for c in conversations]
        if not tokenize:
            return texts if batched else texts[0]
        return self(images=images, text=texts if batched else texts[0], return_tensors=return_tensors)

    def encode(self, text: str, assistant_spans: Sequence[tuple[int, int]] | None = None) -> EncodedPrompt:
        """Token ids (and labels, given assistant spans) of one prompt, image placeholders expanded."""
        return encode_prompt(
            self.tokenizer,
            text,
            image_token_id=self.image_token_id,
            tokens_per_image=self.tokens_per_image,
            assistant_spans=assistant_spans,
            placeholder=self.image_placeholder,
        )

    def encode_conversation(self, messages: Sequence[Mapping[str, Any]], template: str | None = None) -> EncodedPrompt:
        """Ids and labels of a full training conversation: only assistant text and its end-of-turn are supervised."""
        rendered = self.render(messages, add_generation_prompt=False, template=template)
        return self.encode(rendered.text, rendered.assistant_spans)

    # ---- model inputs --------------------------------------------------------------------------------------------
    def __call__(
        self,
        images: Any = None,
        text: str | Sequence[str] | None = None,
        return_tensors: str | None = "pt",
        padding_side: str = "left",
        max_length: int | None = None,
        **kwargs: Any,
    ) -> BatchFeature:
        """``input_ids``, ``attention_mask`` and (with images) ``pixel_values`` (and ``image_grids`` for dynamic
        grids).

        ``images`` is a flat list in prompt order across the batch (or a list per prompt). Raises ValueError when
        the ``<image>`` placeholders and the images disagree, or a prompt exceeds ``max_length`` (image slots are
        never truncated).
        """
        if kwargs:
            raise TypeError(f"unexpected processor arguments: {', '.join(sorted(kwargs))}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        image_list = _as_image_list(images)
        data: dict[str, Any] = {}
        if text is not None:
            texts = [text] if isinstance(text, str) else list(text)
            if not all(isinstance(t, str) for t in texts):
                raise ValueError("text must be a string or a list of strings")
            placeholders = sum(t.count(self.image_placeholder) for t in texts)
            if placeholders != len(image_list):
                raise ValueError(
                    f"the text has {placeholders} {self.image_placeholder} placeholder(s) but {len(image_list)} "
                    "image(s) were given"
                )
            encoded = [self.encode(t).input_ids for t in texts]
            if max_length is not None:
                for index, ids in enumerate(encoded):
                    if len(ids) > max_length:
                        raise ValueError(
                            f"prompt {index} is {len(ids)} tokens long, over the limit of {max_length} "
                            f"(image slots are never truncated)"
                        )
            data.update(self.pad(encoded, padding_side=padding_side, return_tensors=return_tensors))
        if image_list:
            data.update(self.image_processor(image_list, return_tensors=return_tensors))
        return BatchFeature(data=data)

    def pad(
        self, sequences: Sequence[Sequence[int]], padding_side: str = "left", return_tensors: str | None = "pt"
    ) -> dict[str, Any]:
        """Pad id lists to one length: ``input_ids`` with the pad id, ``attention_mask`` 0 on padding."""
        pad_id = self.pad_token_id
        width = max((len(s) for s in sequences), default=0)
        ids, mask = [], []
        for seq in sequences:
            fill = width - len(seq)
            if padding_side == "left":
                ids.append([pad_id] * fill + list(seq))
                mask.append([0] * fill + [1] * len(seq))
            else:
                ids.append(list(seq) + [pad_id] * fill)
                mask.append([1] * len(seq) + [0] * fill)
        if return_tensors == "pt":
            return {"input_ids": torch.tensor(ids, dtype=torch.long), "attention_mask": torch.tensor(mask)}
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def pad_token_id(self) -> int:
        tok = self.tokenizer
        pad = tok.pad_token_id
        if pad is None or pad == self.image_token_id:  # padding must never look like an image slot
            pad = tok.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token to pad batches with")
        return int(pad)

    # ---- generation helpers --------------------------------------------------------------------------------------
    def stop_token_ids(self, template: str | None = None) -> list[int]:
        """Ids that end an assistant turn for the template (those that are single tokens), plus the EOS."""
        ids = []
        for stop in get_template(template or self.template).stop:
            token_id = self.tokenizer.convert_tokens_to_ids(stop)
            if token_id is not None and token_id != self.tokenizer.unk_token_id:
                ids.append(int(token_id))
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(int(self.tokenizer.eos_token_id))
        return ids

    def decode(self, token_ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(token_ids, skip_special_tokens=skip_special_tokens)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=skip_special_tokens)


__all__ = ["IGNORE_INDEX", "InfLlavaImageProcessor", "InfLlavaProcessor"]
