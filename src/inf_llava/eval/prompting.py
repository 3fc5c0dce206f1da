"""The full model prompt of an evaluation sample, byte for byte as lmms-eval's LLaVA wrapper builds it.

The wrapper puts ``"<image>"`` once per image, joined by single spaces, then ``"\\n"``, in front of the task text
(unless the text already has ``<image>``), and makes that the user turn of the conversation template, followed by
an empty assistant turn. Unlike chat rendering, the task text is not stripped and several images stay on one line.
"""

from __future__ import annotations

from ..processing.templates import IMAGE_PLACEHOLDER, ChatTemplate


def user_text(task_text: str, num_images: int) -> str:
    if num_images and IMAGE_PLACEHOLDER not in task_text:
        return " ".join([IMAGE_PLACEHOLDER] * num_images) + "\n" + task_text
    return task_text


def render_eval_prompt(template: ChatTemplate, task_text: str, num_images: int) -> str:
    """System prefix + user header + (image placeholders +) task text + end of turn + assistant header."""
    header = template.assistant_header if template.generation_header is None else template.generation_header
    if template.images_only_user:
        raise ValueError(f"template {template.name!r} renders captions only and cannot carry evaluation questions")
    return (
        template.prefix.format(system=template.system)
        + template.user_header
        + user_text(task_text, num_images)
        + template.user_end
        + header
    )


__all__ = ["render_eval_prompt", "user_text"]
