"""The one inference facade used by the CLI, the server, evaluation and the demo: batched, streaming generation
over conversations with images.

Batches are left-padded; with greedy decoding a batch gives the same tokens as each conversation alone.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .modeling.inf_llava import InfLlavaForConditionalGeneration
from .processing.processor import InfLlavaProcessor
from .processing.templates import get_template
from .runtime import resolve_device, resolve_dtype

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding options. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"
    token_ids: list[int] = field(default_factory=list)


class InfLlavaEngine:
    """Model + processor + template, ready to answer.

    Args:
        model: an :class:`InfLlavaForConditionalGeneration` (in eval mode).
        processor: its :class:`InfLlavaProcessor`.
        template: conversation template (default: the processor's).
    """

    def __init__(
        self, model: InfLlavaForConditionalGeneration, processor: InfLlavaProcessor, template: str | None = None
    ):
        self.model = model.eval()
        self.processor = processor
        self.template = get_template(template or processor.template).name
        self._lock = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        dtype: str | torch.dtype = "auto",
        device: str | None = None,
        template: str | None = None,
        **model_kwargs: Any,
    ) -> InfLlavaEngine:
        device_obj = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, device_obj)
        processor = InfLlavaProcessor.from_pretrained(str(path))
        model = InfLlavaForConditionalGeneration.from_pretrained(str(path), dtype=torch_dtype, **model_kwargs)
        if "device_map" not in model_kwargs:
            model = model.to(device_obj)
        return cls(model, processor, template)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ---- prompts -------------------------------------------------------------------------------------------------
    def prompt(self, messages: Messages | str) -> str:
        """The rendered prompt of a conversation. A string is taken as already rendered, so harnesses that must
        match another tool's prompt byte for byte (evaluation) can pass their own."""
        if isinstance(messages, str):
            return messages
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, template=self.template)

    @staticmethod
    def question(question: str, with_image: bool = True) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": question})
        return [{"role": "user", "content": content}]

    def inputs(
        self, conversations: Sequence[Messages | str], images: Sequence[Sequence[Image.Image]]
    ) -> dict[str, Any]:
        prompts = [self.prompt(c) for c in conversations]
        flat = [image for group in images for image in group]
        batch = self.processor(images=flat or None, text=prompts, return_tensors="pt", padding_side="left")
        out = {k: v.to(self.device) for k, v in batch.items()}
        if "pixel_values" in out:
            out["pixel_values"] = out["pixel_values"].to(self.model.dtype)
        return out

    def _generate_kwargs(self, settings: GenerationSettings) -> dict[str, Any]:
        stop_ids = self.processor.stop_token_ids(self.template)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=stop_ids,
            pad_token_id=self.processor.pad_token_id,
        )
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    # ---- generation ----------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def complete(
        self,
        conversations: Sequence[Messages | str],
        images: Sequence[Sequence[Image.Image]],
        settings: GenerationSettings | None = None,
    ) -> list[Completion]:
        """Generate one answer per conversation, all in one left-padded batch."""
        settings = settings or GenerationSettings()
        if len(images) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(images)} image lists")
        if not conversations:
            return []
        inputs = self.inputs(conversations, images)
        stop_ids = set(self.processor.stop_token_ids(self.template))
        with self._lock:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            out = self.model.generate(**inputs, **self._generate_kwargs(settings))
        prompt_len = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(1).tolist()
        results = []
        for row, n_prompt in zip(out[:, prompt_len:].tolist(), prompt_tokens):
            kept, finish = [], "length"
            for token in row:
                if token in stop_ids:
                    finish = "stop"
                    break
                kept.append(token)
            text, cut = _cut_at_stop(self.processor.decode(kept), settings.stop)
            completion_tokens = len(kept) + (1 if finish == "stop" else 0)
            results.append(Completion(text, int(n_prompt), completion_tokens, "stop" if cut else finish, kept))
        return results

    def answer(self, image: Image.Image | None, question: str, settings: GenerationSettings | None = None) -> str:
        messages = self.question(question, with_image=image is not None)
        return self.complete([messages], [[image] if image is not None else []], settings)[0].text

    def stream(
        self, messages: Messages, images: Sequence[Image.Image], settings: GenerationSettings | None = None
    ) -> Iterator[str]:
        """Yield the answer's text as it is generated (greedy or sampled)."""
        from transformers import TextIteratorStreamer

        settings = settings or GenerationSettings()
        inputs = self.inputs([messages], [list(images)])
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, **self._generate_kwargs(settings), streamer=streamer)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode(), self._lock:
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    self.model.generate(**kwargs)
            except BaseException as exc:  # surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        emitted = ""
        for piece in streamer:
            text, cut = _cut_at_stop(emitted + piece, settings.stop)
            if text[len(emitted) :]:
                yield text[len(emitted) :]
            emitted = text
            if cut:
                break
        thread.join()
        if errors:
            raise errors[0]


def _cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = len(text)
    for stop in stops:
        if stop and (index := text.find(stop)) != -1:
            cut = min(cut, index)
    return text[:cut], cut < len(text)


__all__ = ["Completion", "GenerationSettings", "InfLlavaEngine"]
