"""The LLM judges, over any OpenAI-compatible chat endpoint (OpenAI, Azure-style proxies, vLLM, a local stub):
LLaVA-Bench reviews and, optionally, MMBench's answer-matching fallback. Prompts and parsing live in
:mod:`inf_llava.eval.scoring`; this module only talks HTTP, through the official ``openai`` client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .scoring.judge import JUDGE_MAX_TOKENS, JUDGE_TEMPERATURE, judge_messages
from .scoring.mcq import can_infer, judge_options_string, judge_prompt

DEFAULT_JUDGE_MODEL = "gpt-4-0613"  # lmms-eval July 2024 (LLaVA-1.5 used gpt-4-0314): record which one you use
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
MMBENCH_JUDGE_TRIES = 3


@dataclass(frozen=True)
class JudgeConfig:
    url: str
    model: str = DEFAULT_JUDGE_MODEL
    api_key_env: str = DEFAULT_KEY_ENV
    timeout: float = 120.0
    max_retries: int = 5


class OpenAIJudge:
    """A chat-completions client for judging. The API key is read from ``config.api_key_env``."""

    def __init__(self, config: JudgeConfig):
        from openai import OpenAI

        key = os.environ.get(config.api_key_env)
        if not key:
            raise ValueError(
                f"the judge's API key is read from ${config.api_key_env}, which is not set "
                "(set it, or name another variable with --judge-api-key-env)"
            )
        self.config = config
        self.client = OpenAI(base_url=config.url, api_key=key, timeout=config.timeout, max_retries=config.max_retries)

    def chat(self, messages: list[dict[str, str]], *, temperature: float, max_tokens: int) -> tuple[str, str]:
        """One completion: ``(stripped reply, model name the server reports)``."""
        import openai

        try:
            response = self.client.chat.completions.create(
                model=self.config.model, messages=messages, temperature=temperature, max_tokens=max_tokens
            )
        except openai.OpenAIError as exc:
            message = " ".join(str(exc).split())[:300]
            raise RuntimeError(f"judge {self.config.model} at {self.config.url} failed: {message}") from None
        if not response.choices:
            raise RuntimeError(f"judge {self.config.model} at {self.config.url} returned no choices")
        content = response.choices[0].message.content or ""
        return content.strip(), response.model or self.config.model

    def review(self, content: str) -> tuple[str, str]:
        """A LLaVA-Bench review (temperature 0.2, 1024 tokens, system + user message, as upstream)."""
        return self.chat(judge_messages(content), temperature=JUDGE_TEMPERATURE, max_tokens=JUDGE_MAX_TOKENS)

    def mmbench_letter(self, row: Mapping[str, Any]) -> str | None:
        """MMBench's fallback: ask the judge to match the answer to an option (temperature 0, 256 tokens, up to 3
        tries); ``None`` when no reply names exactly one option (counted as wrong, not a random letter)."""
        options = list(row.get("options") or [])
        prompt = judge_prompt(str(row["question"]), judge_options_string(options), str(row["prediction"]))
        choices = dict(zip("ABCD", options))
        for _ in range(MMBENCH_JUDGE_TRIES):
            reply, _model = self.chat([{"role": "user", "content": prompt}], temperature=0.0, max_tokens=256)
            letter = can_infer(reply, choices)
            if letter:
                return letter
        return None


__all__ = ["DEFAULT_JUDGE_MODEL", "DEFAULT_KEY_ENV", "JudgeConfig", "OpenAIJudge"]
