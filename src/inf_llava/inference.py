"""The one inference facade used by the CLI, the server, evaluation and the demo: batched, streaming generation
over conversations with images.

Batches are left-padded; with greedy decoding a batch gives the same tokens as each conversation alone.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import StoppingCriteria

from .modeling.inf_llava import InfLlavaForConditionalGeneration
from .modeling.packed_linear import LM_MAX_ROWS, use_packed_linears
from .processing.processor import InfLlavaProcessor
from .processing.templates import get_template

Messages = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class GenerationSettings:
    """Decoding options. ``temperature == 0`` means greedy decoding."""

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    max_time: float | None = None  # seconds; generation stops (finish "length") once it has run this long

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_time is not None and self.max_time <= 0:
            raise ValueError(f"max_time must be > 0, got {self.max_time}")


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
        device_map: str | dict[str, Any] | None = None,
        quantization: str | None = None,
        compile: bool = False,
        pack_lm_weights: bool = False,
        **model_kwargs: Any,
    ) -> InfLlavaEngine:
        """Load model + processor from a directory: see :func:`inf_llava.loading.load_model` for ``dtype``,
        ``device``, ``device_map`` (e.g. ``"auto"`` across GPUs) and ``quantization`` (``"4bit"`` / ``"8bit"``).
        ``compile=True`` compiles the image encoder with ``torch.compile`` and inductor's weight freezing (in place:
        parameter names are unchanged, outputs agree within the compute dtype's rounding; the first image of each
        batch size pays the compile time; see :meth:`InfLlavaImageEncoder.compile`). ``pack_lm_weights=True`` lets
        the language model's linear layers (the image encoder's always do) multiply by weights packed once for oneDNN
        when running in bf16 on CPU: the same tokens, faster decoding, one extra copy of the LM's weights in memory
        (:mod:`inf_llava.modeling.packed_linear`)."""
        from .loading import load_model

        model = load_model(
            path, dtype=dtype, device=device, device_map=device_map, quantization=quantization, **model_kwargs
        )
        if compile:
            model.model.image_encoder.compile(freeze=True)
        if pack_lm_weights:
            use_packed_linears(model.model.language_model, max_rows=LM_MAX_ROWS)
            use_packed_linears(model.lm_head, max_rows=LM_MAX_ROWS)
        processor = InfLlavaProcessor.from_pretrained(str(path))
        return cls(model, processor, template)

    @property
    def device(self) -> torch.device:
        """Where prompts go: the device of the LM's input embeddings (the first device under a device map)."""
        return self.model.get_input_embeddings().weight.device

    @property
    def image_device(self) -> torch.device:
        return next(self.model.image_encoder.parameters()).device

    @property
    def image_dtype(self) -> torch.dtype:
        return next(self.model.image_encoder.parameters()).dtype

    @property
    def context_length(self) -> int | None:
        """The LM's maximum sequence length (prompt + answer), if its config states one."""
        return getattr(self.model.config.text_config, "max_position_embeddings", None)

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

    def prompt_length(self, messages: Messages | str) -> int:
        """Tokens of the rendered prompt, image slots included (cheap: no image processing)."""
        return len(self.processor.encode(self.prompt(messages)).input_ids)

    def inputs(
        self, conversations: Sequence[Messages | str], images: Sequence[Sequence[Image.Image]]
    ) -> dict[str, Any]:
        """Left-padded model inputs; raises ValueError for a prompt longer than the LM's context."""
        prompts = [self.prompt(c) for c in conversations]
        flat = [image for group in images for image in group]
        batch = self.processor(
            images=flat or None,
            text=prompts,
            return_tensors="pt",
            padding_side="left",
            max_length=self.context_length,
        )
        out = {k: v.to(self.device) for k, v in batch.items() if k != "pixel_values"}
        if "pixel_values" in batch:
            out["pixel_values"] = batch["pixel_values"].to(self.image_device, self.image_dtype)
        return out

    def _generate_kwargs(self, settings: GenerationSettings, prompt_len: int = 0) -> dict[str, Any]:
        stop_ids = self.processor.stop_token_ids(self.template)
        max_new_tokens = settings.max_new_tokens
        if self.context_length is not None:
            # The answer never runs past the LM's context (finish reason "length" when it would).
            room = self.context_length - prompt_len
            if room < 1:
                raise ValueError(
                    f"the prompt ({prompt_len} tokens) leaves no room in the {self.context_length}-token context"
                )
            max_new_tokens = min(max_new_tokens, room)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=max_new_tokens,
            eos_token_id=stop_ids,
            pad_token_id=self.processor.pad_token_id,
            suppress_tokens=[self.processor.image_token_id],  # an image slot is never an answer token
        )
        if settings.temperature > 0:
            kwargs.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if settings.max_time is not None:
            kwargs["max_time"] = settings.max_time
        if self.device.type == "cpu" and not getattr(self.model, "hf_device_map", None):
            # A preallocated KV cache: the default dynamic cache re-concatenates every layer's keys and values at
            # each step, which on CPU costs more than the decode itself once batches grow (docs/performance.md).
            kwargs["cache_implementation"] = "static"
        return kwargs

    def _completion(self, row: Sequence[int], n_prompt: int, stops: Sequence[str]) -> Completion:
        """Generated ids of one row (padding and stop tokens included) -> a :class:`Completion`."""
        stop_ids = set(self.processor.stop_token_ids(self.template))
        kept, finish = [], "length"
        for token in row:
            if token in stop_ids:
                finish = "stop"
                break
            kept.append(token)
        text, cut = cut_at_stop(self.processor.decode(kept), stops)
        completion_tokens = len(kept) + (1 if finish == "stop" else 0)
        return Completion(text, int(n_prompt), completion_tokens, "stop" if cut else finish, kept)

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
        with self._lock:
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            out = self.model.generate(**inputs, **self._generate_kwargs(settings, inputs["input_ids"].shape[1]))
        prompt_len = inputs["input_ids"].shape[1]
        prompt_tokens = inputs["attention_mask"].sum(1).tolist()
        rows = out[:, prompt_len:].tolist()
        return [self._completion(row, n, settings.stop) for row, n in zip(rows, prompt_tokens)]

    def answer(self, image: Image.Image | None, question: str, settings: GenerationSettings | None = None) -> str:
        messages = self.question(question, with_image=image is not None)
        return self.complete([messages], [[image] if image is not None else []], settings)[0].text

    def stream(
        self, messages: Messages, images: Sequence[Image.Image], settings: GenerationSettings | None = None
    ) -> Generator[str, None, Completion]:
        """Yield the answer's text as it is generated (greedy or sampled).

        The generator's return value (``StopIteration.value``, or ``result = yield from engine.stream(...)``) is the
        :class:`Completion` with token counts and the finish reason. Closing the generator early (a client that
        went away) or reaching a stop string stops generation at the next token instead of running to the limit.
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        settings = settings or GenerationSettings()
        inputs = self.inputs([messages], [list(images)])
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        cancel = threading.Event()
        kwargs = dict(
            **inputs,
            **self._generate_kwargs(settings, inputs["input_ids"].shape[1]),
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Cancelled(cancel)]),
        )
        errors: list[BaseException] = []
        outputs: list[torch.Tensor] = []

        def run() -> None:
            try:
                with torch.inference_mode(), self._lock:
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    outputs.append(self.model.generate(**kwargs))
            except BaseException as exc:  # surfaced to the consumer below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        # `received` is the decoded answer so far; `emitted` the part yielded. A tail that could begin a stop string
        # is held back until the next piece shows whether it does (detokenizers may deliver text in words, so a stop
        # string can straddle two pieces).
        received, emitted, cut, exhausted = "", "", False, False
        try:
            for piece in streamer:
                received, cut = cut_at_stop(received + piece, settings.stop)
                ready = received if cut else received[: len(received) - stop_prefix_length(received, settings.stop)]
                if ready[len(emitted) :]:
                    yield ready[len(emitted) :]
                emitted = ready
                if cut:
                    break
            else:
                exhausted = True
                if received[len(emitted) :]:
                    yield received[len(emitted) :]
                emitted = received
        finally:
            cancel.set()
            if not exhausted:
                for _ in streamer:  # drain to the end marker, so the generation thread finishes cleanly
                    pass
            thread.join()
        if errors:
            raise errors[0]
        prompt_len = inputs["input_ids"].shape[1]
        done = self._completion(outputs[0][0, prompt_len:].tolist(), prompt_len, ())
        if cut:
            return Completion(emitted, done.prompt_tokens, done.completion_tokens, "stop", done.token_ids)
        return Completion(emitted, done.prompt_tokens, done.completion_tokens, done.finish_reason, done.token_ids)


class _Cancelled(StoppingCriteria):
    """A stopping criterion that ends generation once ``event`` is set (consumer gone or stop string seen)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to the first occurrence of any stop string, and whether it was cut."""
    cut = len(text)
    for stop in stops:
        if stop and (index := text.find(stop)) != -1:
            cut = min(cut, index)
    return text[:cut], cut < len(text)


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of a stop string (text that may still turn
    out to be the start of one)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


_cut_at_stop = cut_at_stop  # former private name

__all__ = ["Completion", "GenerationSettings", "InfLlavaEngine", "cut_at_stop", "stop_prefix_length"]
