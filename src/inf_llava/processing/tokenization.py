"""Prompt text -> token ids with image slots, and labels from assistant spans.

The official ``tokenizer_image_token`` (spec 10.2) splits the prompt on ``<image>`` and tokenises every chunk on its
own (so no BPE merge crosses an image); if the tokenizer adds a BOS, it is kept once at the start and dropped from
every chunk. That keeps the *double* BOS of the ``llama3`` template (literal ``<|begin_of_text|>`` + the tokenizer's
own). Instead of the official ``-200`` sentinel, each image becomes ``tokens_per_image`` copies of a real vocabulary
id (``image_token_id``) that the model's scatter fills.

Labels: a token is supervised when its characters overlap an assistant span of the rendered prompt; everything
else (BOS, system, user turns, headers, image slots) is ``IGNORE_INDEX``. No token counting, so no "tokenization
mismatch" can silently drop a sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .templates import IMAGE_PLACEHOLDER

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EncodedPrompt:
    input_ids: list[int]
    labels: list[int] | None = None

    @property
    def num_supervised(self) -> int:
        return 0 if self.labels is None else sum(label != IGNORE_INDEX for label in self.labels)


def encode_prompt(
    tokenizer,
    text: str,
    *,
    image_token_id: int,
    tokens_per_image: int,
    assistant_spans: Sequence[tuple[int, int]] | None = None,
    placeholder: str = IMAGE_PLACEHOLDER,
) -> EncodedPrompt:
    """Tokenise ``text``, expanding every ``placeholder`` to ``tokens_per_image`` image slots.

    With ``assistant_spans`` (character ranges of ``text``) also returns labels. Raises ValueError when the text
    itself contains the image token (it would create a slot no image fills).
    """
    chunks = text.split(placeholder)
    want_offsets = assistant_spans is not None
    enc = tokenizer(chunks, add_special_tokens=True, return_offsets_mapping=want_offsets)
    chunk_ids: list[list[int]] = enc["input_ids"]
    bos = tokenizer.bos_token_id
    skip = 1 if bos is not None and chunk_ids[0][:1] == [bos] else 0
    ids: list[int] = [bos] if skip else []
    labels: list[int] | None = [IGNORE_INDEX] * len(ids) if want_offsets else None
    start = 0  # character position of the current chunk in `text`
    for index, chunk in enumerate(chunks):
        if index:
            ids.extend([image_token_id] * tokens_per_image)
            if labels is not None:
                labels.extend([IGNORE_INDEX] * tokens_per_image)
            start += len(placeholder)
        piece = chunk_ids[index][skip:]
        if image_token_id in piece:
            raise ValueError(
                f"the prompt text contains the image token (id {image_token_id}) itself; "
                f"mark images with {placeholder!r} instead"
            )
        ids.extend(piece)
        if labels is not None:
            for token, (lo, hi) in zip(piece, enc["offset_mapping"][index][skip:]):
                lo, hi = lo + start, hi + start
                inside = hi > lo and any(lo < b and hi > a for a, b in assistant_spans)
                labels.append(token if inside else IGNORE_INDEX)
        start += len(chunk)
    return EncodedPrompt(input_ids=ids, labels=labels)
