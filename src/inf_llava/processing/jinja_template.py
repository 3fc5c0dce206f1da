"""A named conversation template written out as a Jinja chat template (``chat_template.jinja``).

The processor renders prompts with :mod:`.templates`; this file is the same rendering for tools that only read a
repository's ``chat_template.jinja`` (``tokenizer.apply_chat_template``, vLLM, TGI, other processors): messages as
:meth:`ChatTemplate.render` takes them (``content`` a string with ``<image>`` markers or a list of ``image`` /
``image_url`` / ``text`` parts), each message's images moved to its front as ``<image>`` + separator, the text
stripped, a leading system message (or the processor's ``system_prompt``, which wins) in the prefix, and
``add_generation_prompt``. Turn order errors raise through ``raise_exception`` as the HF templates do.
"""

from __future__ import annotations

import json

from .templates import IMAGE_PLACEHOLDER, ChatTemplate, get_template


def _literal(text: str) -> str:
    """A Jinja string literal (JSON escaping is valid Jinja)."""
    return json.dumps(text, ensure_ascii=False)


def jinja_chat_template(template: str | ChatTemplate, system_prompt: str | None = None) -> str:
    """The Jinja source that renders exactly what ``template.render(messages, add_generation_prompt,
    system=system_prompt)`` renders."""
    t = get_template(template)
    image = _literal(IMAGE_PLACEHOLDER)
    before, after = t.prefix.split("{system}") if "{system}" in t.prefix else (t.prefix, None)
    generation = t.assistant_header if t.generation_header is None else t.generation_header
    if t.images_only_user:
        user_body = f"{image} * ns.images"
    else:
        user_body = f"({image} + {_literal(t.image_separator)}) * ns.images + ns.text"
    system_source = (
        _literal(system_prompt)
        if system_prompt is not None
        else f"(first.content if first.content is string else first.content | selectattr('type', 'equalto', 'text') "
        f"| map(attribute='text') | join('\\n')) if first.role == 'system' else {_literal(t.system)}"
    )
    lines = [
        f"{{#- inf-llava template {t.name!r}: generated from inf_llava.processing.templates; do not edit -#}}",
        "{%- set first = messages[0] if messages else {'role': '', 'content': ''} -%}",
        "{%- set turns = messages[1:] if first.role == 'system' else messages -%}",
        _literal(before).join(["{{- ", " -}}"]),
    ]
    if after is not None:
        lines += [f"{{{{- {system_source} -}}}}", _literal(after).join(["{{- ", " -}}"])]
    lines += [
        "{%- set state = namespace(expected='user') -%}",
        "{%- for message in turns -%}",
        "  {%- if message.role == 'system' -%}{{- raise_exception('a system message is only allowed first') -}}",
        "  {%- elif message.role != state.expected -%}"
        "{{- raise_exception('expected a ' + state.expected + ' turn, got ' + message.role) -}}{%- endif -%}",
        "  {%- set ns = namespace(images=0, text='') -%}",
        "  {%- if message.content is string -%}",
        "    {%- set ns.text = message.content -%}",
        f"    {{%- set ns.images = (message.content.split({image}) | length) - 1 -%}}",
        "  {%- elif message.content is not none -%}",
        "    {%- set ns.images = message.content | selectattr('type', 'in', ['image', 'image_url']) | list "
        "| length -%}",
        "    {%- set ns.text = message.content | selectattr('type', 'equalto', 'text') | map(attribute='text') "
        "| join('\\n') -%}",
        f"    {{%- set ns.images = ns.images + (ns.text.split({image}) | length) - 1 -%}}",
        "  {%- endif -%}",
        f"  {{%- if ns.images > 0 -%}}{{%- set ns.text = ns.text | replace({image}, '') | trim -%}}{{%- endif -%}}",
        "  {%- if message.role == 'user' -%}",
        f"    {{{{- {_literal(t.user_header)} + {user_body} + {_literal(t.user_end)} -}}}}",
        "    {%- set state.expected = 'assistant' -%}",
        "  {%- else -%}",
        "    {%- if ns.images > 0 -%}{{- raise_exception('assistant turns cannot contain images') -}}{%- endif -%}",
        f"    {{{{- {_literal(t.assistant_header)} + ns.text + {_literal(t.assistant_end)} + "
        f"{_literal(t.after_assistant)} -}}}}",
        "    {%- set state.expected = 'user' -%}",
        "  {%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}",
        "  {%- if state.expected != 'assistant' -%}"
        "{{- raise_exception('add_generation_prompt needs the conversation to end with a user turn') -}}{%- endif -%}",
        f"  {{{{- {_literal(generation)} -}}}}",
        "{%- endif -%}",
    ]
    return "\n".join(lines) + "\n"


__all__ = ["jinja_chat_template"]
