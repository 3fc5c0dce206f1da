"""The lmms-eval model ``inf_llava`` (a "simple" model: lmms-eval hands it the task text and the doc's images).

``--model_args pretrained=DIR[,device=cuda:0][,dtype=bf16][,batch_size=8][,template=llama3]``. Prompts are built
exactly as lmms-eval's own LLaVA wrapper builds them (``<image>`` per image, space-joined, then a newline, in the
user turn of the conversation template), generation goes through :class:`inf_llava.inference.InfLlavaEngine`
(left-padded batches, greedy unless the task sets a temperature, stop at the template's end of turn). As in that
wrapper, the tasks' ``until`` strings are not applied. Under ``accelerate launch`` each process takes its
``cuda:<local rank>`` and lmms-eval shards the requests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.api.registry import register_model
from PIL import Image
from tqdm.auto import tqdm

from ....assets import resolve_model_path
from ....inference import GenerationSettings, InfLlavaEngine
from ....processing.templates import get_template
from ...prompting import render_eval_prompt

DEFAULT_MAX_NEW_TOKENS = 1024  # lmms-eval's default when a task sets none


@register_model("inf_llava")
class InfLlava(lmms):
    is_simple = True

    def __init__(
        self,
        pretrained: str | None = None,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int | str = 1,
        template: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"inf_llava: unknown model_args {', '.join(sorted(unknown))}")
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import Accelerator

            self.accelerator = Accelerator()
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
            if device is None and torch.cuda.is_available():
                device = f"cuda:{self.accelerator.local_process_index}"
        self.engine = InfLlavaEngine.from_pretrained(
            resolve_model_path(pretrained), dtype=dtype, device=device, template=template
        )
        self.template = get_template(self.engine.template)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"inf_llava: batch_size must be >= 1, got {batch_size}")

    @property
    def device(self) -> torch.device:
        return self.engine.device

    # ---- helpers -----------------------------------------------------------------------------------------------------
    def _doc(self, doc_id: Any, task: str, split: str) -> Any:
        return self.task_dict[task][split][doc_id]

    @staticmethod
    def _images(visuals: Any) -> list[Image.Image]:
        """``doc_to_visual``'s output (a list, possibly nested or with None) as RGB images; videos are refused."""
        flat: list[Image.Image] = []
        for item in visuals if isinstance(visuals, (list, tuple)) else [visuals]:
            if item is None:
                continue
            if isinstance(item, (list, tuple)):
                flat.extend(InfLlava._images(item))
            elif isinstance(item, Image.Image):
                flat.append(item.convert("RGB"))
            else:
                raise ValueError(f"inf_llava takes images only, got {type(item).__name__} ({str(item)[:80]})")
        return flat

    @staticmethod
    def _settings(gen_kwargs: dict[str, Any]) -> GenerationSettings:
        if int(gen_kwargs.get("num_beams", 1) or 1) != 1:
            raise ValueError("inf_llava generates greedily or by sampling; num_beams > 1 is not supported")
        temperature = float(gen_kwargs.get("temperature", 0) or 0)
        return GenerationSettings(
            max_new_tokens=int(gen_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            temperature=temperature,
            top_p=float(gen_kwargs.get("top_p", 1.0) or 1.0) if temperature > 0 else 1.0,
        )

    # ---- the lmms interface ------------------------------------------------------------------------------------------
    def generate_until(self, requests: Sequence[Instance]) -> list[str]:
        """Batches of requests that share generation kwargs; answers come back in request order."""
        answers: list[str | None] = [None] * len(requests)
        groups: dict[str, list[int]] = {}
        for index, request in enumerate(requests):
            gen_kwargs = request.args[1]
            groups.setdefault(json.dumps(gen_kwargs, sort_keys=True, default=str), []).append(index)
        bar = tqdm(total=len(requests), desc="inf_llava", disable=self.rank != 0)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                prompts, images = [], []
                for index in chunk:
                    context, _gen_kwargs, doc_to_visual, doc_id, task, split = requests[index].args
                    visuals = self._images(doc_to_visual(self._doc(doc_id, task, split)))
                    prompts.append(render_eval_prompt(self.template, context, len(visuals)))
                    images.append(visuals)
                settings = self._settings(dict(requests[chunk[0]].args[1]))
                for index, completion in zip(chunk, self.engine.complete(prompts, images, settings)):
                    answers[index] = completion.text
                bar.update(len(chunk))
        bar.close()
        return [a if a is not None else "" for a in answers]

    @torch.inference_mode()
    def loglikelihood(self, requests: Sequence[Instance]) -> list[tuple[float, bool]]:
        """Sum of the continuation's token log-probabilities after the prompt, and whether greedy decoding would
        produce exactly those tokens (the first ``len(prompt)`` tokens of the joint encoding are the context)."""
        out = []
        processor, model = self.engine.processor, self.engine.model
        for request in tqdm(requests, desc="inf_llava loglikelihood", disable=self.rank != 0):
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            doc = self._doc(doc_id, task, split)
            continuation = doc_to_target if isinstance(doc_to_target, str) else doc_to_target(doc)
            visuals = self._images(doc_to_visual(doc))
            prompt = render_eval_prompt(self.template, context, len(visuals))
            n_context = len(processor.encode(prompt).input_ids)
            inputs = self.engine.inputs([prompt + continuation], [visuals])
            logits = model(**inputs).logits[0].float()  # (L, V)
            targets = inputs["input_ids"][0, n_context:]
            if targets.numel() == 0:
                raise ValueError(f"inf_llava: empty continuation {continuation!r} after tokenisation")
            log_probs = torch.log_softmax(logits[n_context - 1 : -1], dim=-1)
            total = log_probs.gather(1, targets[:, None]).sum().item()
            greedy = bool((log_probs.argmax(-1) == targets).all())
            out.append((float(total), greedy))
        return out

    def generate_until_multi_round(self, requests: Sequence[Instance]) -> list[str]:
        raise NotImplementedError("inf_llava does not implement multi-round generation")


__all__ = ["InfLlava"]
