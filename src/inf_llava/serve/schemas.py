"""The OpenAI chat-completions request, as pydantic models, and its translation to engine messages.

Unknown request fields (``user``, ``logprobs``, ...) are accepted and ignored, as OpenAI-compatible servers do;
fields that would change the answer and are not supported (``n > 1``) are refused by the app.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ImageURL(BaseModel):
    url: str
    detail: str | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL | str


Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[Part] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(default=1, ge=1)
    seed: int | None = None

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if len(stops) > 4:
            raise ValueError("stop: at most 4 stop strings")
        return tuple(s for s in stops if s)


def to_engine_messages(messages: list[Message]) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI messages -> (HF-style messages with ``{"type": "image"}`` parts, the image URLs in order)."""
    out: list[dict[str, Any]] = []
    urls: list[str] = []
    for index, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        content = message.content
        if content is None or isinstance(content, str):
            out.append({"role": role, "content": content or ""})
            continue
        parts: list[dict[str, Any]] = []
        for part in content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "text": part.text})
            else:
                if role != "user":
                    raise ValueError(f"messages.{index}: only user messages can carry images")
                urls.append(part.image_url if isinstance(part.image_url, str) else part.image_url.url)
                parts.append({"type": "image"})
        out.append({"role": role, "content": parts})
    return out, urls
