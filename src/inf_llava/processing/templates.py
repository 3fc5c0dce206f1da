"""Conversation templates, rendered to text with the character spans of every supervised assistant turn.

Templates are immutable values in a read-only registry (no global "default conversation" to mutate):

- ``llama3``: the INF-LLaVA stage-2 template (spec 9.1), byte-exact with the official prompt, double BOS included
  (the literal ``<|begin_of_text|>`` plus the tokenizer's own BOS);
- ``plain``: stage-1 captioning (spec 10.4): ``<image>`` + caption + ``\\n``, no system text, no roles;
- ``vicuna_v1``: LLaVA-1.5's template (``USER: ... ASSISTANT: ...</s>``);
- ``chatml``: ``<|im_start|>role\\n...<|im_end|>\\n`` (Qwen-style LMs).

Messages are HF-style: ``{"role": "system" | "user" | "assistant", "content": str | list of parts}`` with parts
``{"type": "image"}`` and ``{"type": "text", "text": ...}``. As the official ``preprocess_multimodal`` does, the
images of a message are moved to its front as ``<image>\\n`` each, and the text is stripped. In plain strings a
literal ``<image>`` marks an image. A render returns the text plus the spans (start, end) of assistant text and its
end-of-turn marker: exactly what training supervises.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

IMAGE_PLACEHOLDER = "<image>"

LLAVA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@dataclass(frozen=True)
class RenderedPrompt:
    """A rendered conversation: ``text`` plus the ``[start, end)`` character spans to supervise."""

    text: str
    assistant_spans: tuple[tuple[int, int], ...] = ()
    num_images: int = 0


@dataclass(frozen=True)
class ChatTemplate:
    """One conversation format.

    A turn renders as ``header(role) + message + end_of_turn(role)``; the assistant's message and its end-of-turn
    marker are supervised. ``prefix`` (with ``{system}``) opens the conversation.
    """

    name: str
    prefix: str
    system: str
    user_header: str
    assistant_header: str
    user_end: str
    assistant_end: str
    stop: tuple[str, ...]
    images_only_user: bool = False  # plain: a user turn is just its images
    generation_header: str | None = None  # what add_generation_prompt appends (default: assistant_header)
    after_assistant: str = ""  # unsupervised text after an assistant turn's end marker
    image_separator: str = "\n"
    description: str = field(default="", compare=False)

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = False,
        system: str | None = None,
    ) -> RenderedPrompt:
        """Render ``messages``; raises ValueError on unknown roles or turns out of order."""
        turns = normalize_messages(messages)
        if turns and turns[0][0] == "system":
            if system is None:
                system = turns[0][1]
            turns = turns[1:]
        system = self.system if system is None else system
        text = self.prefix.format(system=system)
        spans: list[tuple[int, int]] = []
        images = 0
        expected = "user"
        for index, (role, content, n_images) in enumerate(_with_images(turns)):
            if role == "system":
                raise ValueError(f"message {index}: a system message is only allowed first")
            if role != expected:
                raise ValueError(f"message {index}: expected a {expected} turn, got {role} (turns must alternate)")
            expected = "assistant" if role == "user" else "user"
            images += n_images
            if role == "user":
                if self.images_only_user:
                    body = IMAGE_PLACEHOLDER * n_images
                else:
                    body = (IMAGE_PLACEHOLDER + self.image_separator) * n_images + content
                text += self.user_header + body + self.user_end
            else:
                if n_images:
                    raise ValueError(f"message {index}: assistant turns cannot contain images")
                text += self.assistant_header
                start = len(text)
                text += content + self.assistant_end
                spans.append((start, len(text)))
                text += self.after_assistant
        if add_generation_prompt:
            if expected != "assistant":
                raise ValueError("add_generation_prompt needs the conversation to end with a user turn")
            text += self.assistant_header if self.generation_header is None else self.generation_header
        return RenderedPrompt(text=text, assistant_spans=tuple(spans), num_images=images)


def normalize_messages(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """HF-style or LLaVA-style messages -> ``[(role, text with <image> placeholders)]``.

    Accepts ``{"role", "content"}`` (content a string or a list of typed parts) and the LLaVA data format
    ``{"from": "human" | "gpt" | "system", "value"}``.
    """
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"message {index} must be a dict, got {type(message).__name__}")
        if "role" in message:
            role, content = message["role"], message.get("content", "")
        elif "from" in message:
            role = {"human": "user", "gpt": "assistant", "system": "system"}.get(message["from"], message["from"])
            content = message.get("value", "")
        else:
            raise ValueError(f"message {index} has neither 'role' nor 'from'")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"message {index}: unknown role {role!r} (expected system, user or assistant)")
        out.append((role, _content_text(content, index)))
    return out


def _content_text(content: Any, index: int) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, Sequence):
        raise ValueError(f"message {index}: content must be a string or a list of parts")
    texts, images = [], 0
    for part in content:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("image", "image_url"):
            images += 1
        elif kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise ValueError(f"message {index}: a text part needs a string 'text'")
            texts.append(text)
        else:
            raise ValueError(f"message {index}: unknown content part {part!r}")
    return IMAGE_PLACEHOLDER * images + "\n".join(texts)


def _with_images(turns: list[tuple[str, str]]):
    """Move a message's images to its front (official ``preprocess_multimodal``): yields (role, text, n_images)."""
    for role, content in turns:
        n_images = content.count(IMAGE_PLACEHOLDER)
        if n_images:
            content = content.replace(IMAGE_PLACEHOLDER, "").strip()
        yield role, content, n_images


_LLAMA3_HEADER = "<|start_header_id|>{}<|end_header_id|>\n\n"

TEMPLATES: Mapping[str, ChatTemplate] = MappingProxyType(
    {
        "llama3": ChatTemplate(
            name="llama3",
            prefix="<|begin_of_text|>" + _LLAMA3_HEADER.format("system") + "{system}<|eot_id|>",
            system=LLAVA_SYSTEM,
            user_header=_LLAMA3_HEADER.format("user"),
            assistant_header=_LLAMA3_HEADER.format("assistant"),
            user_end="<|eot_id|>",
            assistant_end="<|eot_id|>",
            stop=("<|eot_id|>", "<|end_of_text|>"),
            description="INF-LLaVA stage 2 (Llama-3-Instruct), official MPT-style rendering",
        ),
        "plain": ChatTemplate(
            name="plain",
            prefix="",
            system="",
            user_header="",
            assistant_header="",
            user_end="",
            assistant_end="\n",
            stop=("\n",),
            images_only_user=True,
            description="stage-1 captioning: <image> + caption + newline",
        ),
        "vicuna_v1": ChatTemplate(
            name="vicuna_v1",
            prefix="{system} ",
            system=LLAVA_SYSTEM,
            user_header="USER: ",
            assistant_header="ASSISTANT: ",
            user_end=" ",
            assistant_end="</s>",
            stop=("</s>",),
            generation_header="ASSISTANT:",
            description="LLaVA-1.5 / Vicuna v1",
        ),
        "chatml": ChatTemplate(
            name="chatml",
            prefix="<|im_start|>system\n{system}<|im_end|>\n",
            system="You are a helpful assistant.",
            user_header="<|im_start|>user\n",
            assistant_header="<|im_start|>assistant\n",
            user_end="<|im_end|>\n",
            assistant_end="<|im_end|>",
            after_assistant="\n",
            stop=("<|im_end|>",),
            description="ChatML (Qwen-style)",
        ),
    }
)


def get_template(name: str | ChatTemplate) -> ChatTemplate:
    if isinstance(name, ChatTemplate):
        return name
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown template {name!r}; available: {', '.join(TEMPLATES)}") from None
