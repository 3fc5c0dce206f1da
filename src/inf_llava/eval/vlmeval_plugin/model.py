"""The VLMEvalKit model class of INF-LLaVA (``vlmeval.vlm.base.BaseModel``: ``generate_inner``,
``use_custom_prompt``, ``build_prompt``).

For the paper's benchmarks (:data:`.prompts.DATASETS`) the prompt is this package's (the same text as
``inf-llava eval run`` and the lmms-eval plugin give the model); for any other dataset VLMEvalKit's own prompt is
used. ``generate_inner`` puts ``<image>`` per image in front of the text in the user turn of the conversation template
(:func:`inf_llava.eval.prompting.render_eval_prompt`) and decodes greedily through
:class:`inf_llava.inference.InfLlavaEngine`, up to the benchmark's answer length. This module imports VLMEvalKit.
"""

from __future__ import annotations

from typing import Any

from vlmeval.vlm.base import BaseModel

from ...assets import resolve_model_path
from ...images import load_image
from ...inference import GenerationSettings, InfLlavaEngine
from ...processing.templates import get_template
from ..prompting import render_eval_prompt
from .prompts import DATASETS, benchmark_for, images_for, task_text

DEFAULT_MAX_NEW_TOKENS = 512  # datasets without a benchmark of the paper


class InfLlavaVLM(BaseModel):
    """``InfLlavaVLM(model_path=DIR_OR_HUB_ID, dtype="auto", device=None, template=None, max_new_tokens=None)``."""

    INTERLEAVE = False
    allowed_types = ["text", "image"]

    def __init__(
        self,
        model_path: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        template: str | None = None,
        max_new_tokens: int | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"InfLlavaVLM: unknown arguments {', '.join(sorted(unknown))}")
        self.engine = InfLlavaEngine.from_pretrained(
            resolve_model_path(model_path), dtype=dtype, device=device, template=template
        )
        self.template = get_template(self.engine.template)
        self.max_new_tokens = max_new_tokens

    def use_custom_prompt(self, dataset: str | None) -> bool:
        return dataset in DATASETS

    def build_prompt(self, line: Any, dataset: str | None = None) -> list[dict[str, str]]:
        """Images of the row (dumped by the dataset) then this package's task text for the benchmark."""
        if dataset not in DATASETS:
            raise ValueError(f"InfLlavaVLM has no prompt of its own for {dataset!r}")
        row = dict(line)
        paths = self.dump_image(line, dataset)
        paths = [paths] if isinstance(paths, str) else list(paths)
        message = [{"type": "image", "value": path} for path in images_for(dataset, row, paths)]
        message.append({"type": "text", "value": task_text(dataset, row)})
        return message

    def generate_inner(self, message: list[dict[str, str]], dataset: str | None = None) -> str:
        images = [load_image(item["value"]) for item in message if item["type"] == "image"]
        text = "\n".join(item["value"] for item in message if item["type"] == "text")
        prompt = render_eval_prompt(self.template, text, len(images))
        benchmark = benchmark_for(dataset)
        limit = self.max_new_tokens or (benchmark.max_new_tokens if benchmark else DEFAULT_MAX_NEW_TOKENS)
        settings = GenerationSettings(max_new_tokens=limit, temperature=0.0)
        (completion,) = self.engine.complete([prompt], [images], settings)
        return completion.text


__all__ = ["InfLlavaVLM"]
