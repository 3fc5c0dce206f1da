"""The reader check (issue 14): can the ablation's LLM learn task v2 from image tokens that already hold the answer?

Stage 2 of the ablation stays near chance even where the image side is known to be good (a probe reads the quadrant
of a stage-1 image token at 0.94). This check takes the image side out of the question: it trains the LLM alone
(``model.model.language_model`` and ``lm_head``; tower, DEM and projector untouched) with fixed tokens in the image
slots and scores the validation split. The tokens are either

- ``oracle``: per image token, learned embeddings of what its cell of the image holds (the shape class covering most
  of the cell, the glyph whose centre pixel falls in it, and the token's index): perfect, position-aware features; or
- ``model``: the model's own image tokens (``get_image_features``), computed once and frozen.

If the LLM cannot learn from oracle tokens, no DCM/DEM variant can be told apart by stage 2, whatever its features:
the reader is the bottleneck. Answers are scored by likelihood over the question's answer space (the exact-match
answer of greedy decoding whenever greedy decoding produces an answer of that space).

``python -m inf_llava.synthetic.v2.reader --model DIR --data DIR [--save OUT]`` runs it and prints the validation
curve (``--save``: the model with its trained LLM, a reader pretrained on oracle tokens).
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...processing.tokenization import IGNORE_INDEX
from ..encoder_pretraining import cosine_with_warmup, optimizer_step
from .task import GLYPH_CLASSES, SHAPE_CLASSES, answer_space, independent_questions, scene_from_record
from .tower import class_maps, per_patch


@dataclass(frozen=True)
class ReaderCheck:
    tokens: str = "oracle"  # "oracle" or "model"
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_ratio: float = 0.05
    eval_every: int = 250
    seed: int = 0
    independent: bool = True  # each conversation: every question of the scene no other one answers (else: the split's)


def token_labels(pixels: np.ndarray, scene: dict, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What each of the ``side x side`` image tokens' cells holds, in raster order: ``(shape class, glyph class)``,
    each ``(side * side,)`` (0: none). A glyph belongs to the cell holding its centre pixel."""
    shapes, glyphs = class_maps(pixels, scene)
    cell = pixels.shape[0] // side
    if cell * side != pixels.shape[0]:
        raise ValueError(f"a {pixels.shape[0]}-px image does not split into {side} x {side} token cells")
    return per_patch(shapes[None], cell, "mode")[0], per_patch(glyphs[None], cell, "max")[0]


class OracleTokens(nn.Module):
    """``(shape, glyph)`` labels ``(B, T)`` -> ``(B, T, H)`` tokens: shape + glyph + position embeddings."""

    def __init__(self, tokens: int, width: int):
        super().__init__()
        self.shape = nn.Embedding(len(SHAPE_CLASSES), width)
        self.glyph = nn.Embedding(len(GLYPH_CLASSES), width)
        self.position = nn.Parameter(torch.randn(tokens, width) * 0.02)
        for table in (self.shape, self.glyph):
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, shapes: torch.Tensor, glyphs: torch.Tensor) -> torch.Tensor:
        return self.shape(shapes) + self.glyph(glyphs) + self.position


def encode(processor, qas: Sequence[tuple[str, str]]) -> tuple[list[int], list[int]]:
    """Ids and labels of one conversation: the image, then the question-answer turns (answers supervised)."""
    messages = []
    for index, (question, answer) in enumerate(qas):
        content = ([{"type": "image"}] if index == 0 else []) + [{"type": "text", "text": question}]
        messages += [{"role": "user", "content": content}, {"role": "assistant", "content": answer}]
    encoded = processor.encode_conversation(messages)
    return encoded.input_ids, encoded.labels


def best_candidates(log_probs: torch.Tensor, labels: torch.Tensor, groups: Sequence[int]) -> list[int]:
    """Per group of consecutive rows (one row per candidate answer, ``groups`` giving each question's count), the
    index within the group of the candidate with the highest summed log-probability of its supervised tokens.
    ``log_probs``: ``(N, L, V)`` next-token log-probabilities; ``labels``: ``(N, L)`` (``IGNORE_INDEX`` elsewhere)."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    picked = log_probs[:, :-1].gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    scores = (picked * mask).sum(-1).tolist()
    out, start = [], 0
    for count in groups:
        group = scores[start : start + count]
        out.append(max(range(count), key=group.__getitem__))
        start += count
    return out


class _Reader:
    """The LLM of ``model`` reading fixed image tokens from ``image_tokens(split, indices)``."""

    def __init__(self, model, processor, image_tokens: Callable[[str, list[int]], torch.Tensor]):
        self.model, self.processor, self.image_tokens = model, processor, image_tokens

    def logits(self, split: str, rows: Sequence[tuple[int, list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(ids) for _, ids, _ in rows)
        ids = torch.full((len(rows), length), self.processor.pad_token_id)
        labels = torch.full((len(rows), length), IGNORE_INDEX)
        attention = torch.zeros(len(rows), length, dtype=torch.long)
        for row, (_, x, y) in enumerate(rows):
            ids[row, : len(x)], labels[row, : len(y)], attention[row, : len(x)] = torch.tensor(x), torch.tensor(y), 1
        embeds = self.model.get_input_embeddings()(ids)
        tokens = self.image_tokens(split, [index for index, _, _ in rows]).to(embeds.dtype)
        slots = (ids == self.model.config.image_token_id).unsqueeze(-1)
        embeds = embeds.masked_scatter(slots, tokens.reshape(-1, tokens.shape[-1]))
        hidden = self.model.model.language_model(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        return self.model.lm_head(hidden), labels

    @torch.no_grad()
    def accuracy(self, records: Sequence[dict], split: str, chunk: int = 128) -> dict[str, float]:
        """Accuracy of the likelihood-best answer on single-question ``records``, overall and per kind."""
        rows, groups, golds = [], [], []
        for index, record in enumerate(records):
            question = record["conversations"][0]["value"].replace("<image>", "").strip()
            candidates = answer_space(question)
            rows += [(index, *encode(self.processor, [(question, c)])) for c in candidates]
            groups.append(len(candidates))
            golds.append(candidates.index(record["conversations"][1]["value"]))
        picks: list[int] = []
        for start in range(0, len(groups), chunk):
            group = groups[start : start + chunk]
            first = sum(groups[:start])
            logits, labels = self.logits(split, rows[first : first + sum(group)])
            picks += best_candidates(F.log_softmax(logits, -1), labels, group)
        right: dict[str, list[bool]] = {}
        for record, pick, gold in zip(records, picks, golds):
            right.setdefault(record["kind"], []).append(pick == gold)
        out = {kind: sum(v) / len(v) for kind, v in sorted(right.items())}
        out["overall"] = sum(pick == gold for pick, gold in zip(picks, golds)) / len(golds)
        return out


def _training_turns(record: dict, index: int, check: ReaderCheck) -> list[tuple[str, str]]:
    if check.independent:
        rng = random.Random(f"{check.seed}/{index}")
        return [(qa.question, qa.answer) for qa in independent_questions(scene_from_record(record["scene"]), rng)]
    turns = record["conversations"]
    return [(turns[j]["value"].replace("<image>", "").strip(), turns[j + 1]["value"]) for j in range(0, len(turns), 2)]


def run_reader_check(model, processor, data_dir: Path, check: ReaderCheck, log=print) -> list[dict]:
    """Train ``model``'s LLM on ``data_dir``'s training conversations with ``check.tokens`` in the image slots;
    returns the curve ``[{"step", "loss", "validation": {kind: accuracy}}, ...]``."""
    from ...images import load_image
    from ..encoder_pretraining import preprocess_all

    torch.manual_seed(check.seed)
    records = {split: json.loads((data_dir / f"{split}.json").read_text()) for split in ("train", "validation")}
    side = int(round(model.config.tokens_per_image**0.5))
    trainable = [*model.model.language_model.parameters(), *model.lm_head.parameters()]
    if check.tokens == "oracle":
        labels = {
            split: [token_labels(np.array(load_image(data_dir / r["image"])), r["scene"], side) for r in rs]
            for split, rs in records.items()
        }
        oracle = OracleTokens(model.config.tokens_per_image, model.get_input_embeddings().weight.shape[1])
        trainable += list(oracle.parameters())

        def image_tokens(split, indices):
            shapes, glyphs = (torch.stack([labels[split][i][k] for i in indices]) for k in (0, 1))
            return oracle(shapes, glyphs)
    elif check.tokens == "model":
        with torch.no_grad():
            features = {}
            for split, rs in records.items():
                pixels = preprocess_all(processor, [load_image(data_dir / r["image"]) for r in rs])["pixel_values"]
                features[split] = torch.cat([model.get_image_features(p) for p in pixels.split(64)])

        def image_tokens(split, indices):
            return features[split][indices]
    else:
        raise ValueError(f"unknown reader-check tokens {check.tokens!r}; choose oracle or model")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    reader = _Reader(model, processor, image_tokens)
    train = [
        (index, *encode(processor, _training_turns(record, index, check)))
        for index, record in enumerate(records["train"])
    ]
    optimizer = torch.optim.AdamW(trainable, lr=check.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(check.steps, check.warmup_ratio))
    rng, order, losses, curve = random.Random(check.seed), [], [], []
    model.train()
    for step in range(1, check.steps + 1):
        if len(order) < check.batch_size:
            order += rng.sample(range(len(train)), len(train))
        logits, targets = reader.logits("train", [train[order.pop()] for _ in range(check.batch_size)])
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), targets[:, 1:].flatten(), ignore_index=IGNORE_INDEX)
        losses.append(optimizer_step(loss, optimizer, scheduler, trainable))
        if step % check.eval_every == 0 or step == check.steps:
            model.eval()
            validation = reader.accuracy(records["validation"], "validation")
            model.train()
            window = losses[-check.eval_every :]
            curve.append({"step": step, "loss": sum(window) / len(window), "validation": validation})
            log(json.dumps(curve[-1]))
    model.eval()
    return curve


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a saved model directory (its LLM is trained, not saved)")
    parser.add_argument("--data", required=True, help="a task-v2 data directory (train.json, validation.json)")
    parser.add_argument("--save", help="save the model with the trained LLM here (and the curve as reader_curve.json)")
    for name, default in vars(ReaderCheck()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    args = vars(parser.parse_args(argv))
    from ...modeling.inf_llava import InfLlavaForConditionalGeneration
    from ...processing.processor import InfLlavaProcessor

    torch.set_num_threads(1)
    model_dir = args.pop("model")
    model = InfLlavaForConditionalGeneration.from_pretrained(model_dir)
    processor = InfLlavaProcessor.from_pretrained(model_dir)
    data, save = Path(args.pop("data")), args.pop("save")
    curve = run_reader_check(model, processor, data, ReaderCheck(**args))
    if save:
        from ...jsonl import atomic_write_text
        from ...training.assemble import save_model

        save_model(model, processor, save, overwrite=True)
        atomic_write_text(Path(save) / "reader_curve.json", json.dumps(curve) + "\n")


if __name__ == "__main__":
    main()
