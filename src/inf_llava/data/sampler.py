"""Deterministic, resumable sample order and its split over processes and gradient-accumulation steps.

The order of an epoch is a pure function of ``(seed, epoch, global batch, lengths)``: a seeded random permutation,
or LLaVA's ``group_by_modality_length`` order (spec 13.5). Optimizer step ``s`` consumes the ``G``-sample slice
``s * G ... (s + 1) * G`` of that order (``G`` = per-device batch x processes x accumulation steps); its ``k``-th
micro-batch of ``b`` samples goes to process ``k % world``, accumulation step ``k // world`` (what HF's trainer with
accelerate does). Because a position in the run is just a step number, resuming at step ``s`` continues with exactly
the samples an uninterrupted run would see (none repeated, none skipped), and a different split of the same global
batch (more processes, fewer accumulation steps) sees the same samples per step.

The last step of an epoch may be short; processes without samples in it get an empty micro-batch (the trainer runs
a zero-weight stand-in so that every process takes part in the gradient all-reduce). Nothing is dropped or repeated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import Sampler


def split_to_even_chunks(indices: Sequence[int], lengths: Sequence[int], num_chunks: int) -> list[list[int]]:
    """Split a length-sorted megabatch into ``num_chunks`` chunks of equal count and roughly equal total length
    (greedy: each index joins the lightest chunk that is not full). Counts that do not divide are dealt round-robin."""
    if len(indices) % num_chunks:
        return [list(indices[i::num_chunks]) for i in range(num_chunks)]
    per_chunk = len(indices) // num_chunks
    chunks: list[list[int]] = [[] for _ in range(num_chunks)]
    totals = [0.0] * num_chunks
    for index in indices:
        lightest = totals.index(min(totals))
        chunks[lightest].append(index)
        totals[lightest] += lengths[index]
        if len(chunks[lightest]) == per_chunk:
            totals[lightest] = math.inf
    return chunks


def length_grouped_indices(
    lengths: Sequence[int], batch_size: int, num_chunks: int, generator: torch.Generator
) -> list[int]:
    """Shuffle, cut into megabatches of ``num_chunks * batch_size``, sort each by length (longest first) and split
    it into ``num_chunks`` balanced chunks (LLaVA's ``get_length_grouped_indices``)."""
    indices = torch.randperm(len(lengths), generator=generator).tolist()
    size = num_chunks * batch_size
    out: list[int] = []
    for start in range(0, len(indices), size):
        megabatch = sorted(indices[start : start + size], key=lambda i: lengths[i], reverse=True)
        for chunk in split_to_even_chunks(megabatch, lengths, num_chunks):
            out.extend(chunk)
    return out


def modality_grouped_indices(
    lengths: Sequence[int], multimodal: Sequence[bool], batch_size: int, num_chunks: int, generator: torch.Generator
) -> list[int]:
    """LLaVA's ``group_by_modality_length`` order (spec 13.5): megabatches hold one modality only.

    Multimodal and text-only samples are length-grouped separately, their full megabatches shuffled together, and the
    two leftover partial megabatches appended last as one list sorted by index. Unlike the official code (which
    classifies by the sign of the length and so loses zero-length samples), modality comes from ``multimodal``.
    """
    mm = [i for i, flag in enumerate(multimodal) if flag]
    lang = [i for i, flag in enumerate(multimodal) if not flag]
    if not mm or not lang:
        return length_grouped_indices(lengths, batch_size, num_chunks, generator)
    size = num_chunks * batch_size

    def megabatches(group: list[int]) -> list[list[int]]:
        order = length_grouped_indices([lengths[i] for i in group], batch_size, num_chunks, generator)
        shuffled = [group[i] for i in order]
        return [shuffled[start : start + size] for start in range(0, len(shuffled), size)]

    mm_batches, lang_batches = megabatches(mm), megabatches(lang)
    leftover = mm_batches.pop() + lang_batches.pop()
    full = mm_batches + lang_batches
    order = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if leftover:
        order.append(sorted(leftover))
    return [i for batch in order for i in batch]


@dataclass(frozen=True)
class SamplingPlan:
    """Which samples each process sees at each optimizer step.

    Args:
        num_samples: dataset size.
        batch_size: per-process micro-batch size ``b``.
        world_size: number of processes.
        grad_accum: micro-batches per process per optimizer step.
        seed: base seed of the per-epoch permutations.
        group_by_modality_length: LLaVA's modality/length-grouped order instead of a plain permutation.
        lengths: per-sample word counts (needed for grouping).
        multimodal: per-sample "has images" flags (needed for grouping).
    """

    num_samples: int
    batch_size: int
    world_size: int = 1
    grad_accum: int = 1
    seed: int = 0
    group_by_modality_length: bool = False
    lengths: tuple[int, ...] | None = None
    multimodal: tuple[bool, ...] | None = None
    _orders: dict[int, list[int]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("num_samples", "batch_size", "world_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_by_modality_length and (self.lengths is None or self.multimodal is None):
            raise ValueError("group_by_modality_length needs per-sample lengths and modality flags")

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size * self.grad_accum

    @property
    def micro_batches_per_step(self) -> int:
        return self.world_size * self.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_samples / self.global_batch)

    def epoch_order(self, epoch: int) -> list[int]:
        """The permutation of all sample indices for ``epoch`` (deterministic; the latest epoch is cached)."""
        if epoch not in self._orders:
            self._orders.clear()
            self._orders[epoch] = self._compute_order(epoch)
        return self._orders[epoch]

    def _compute_order(self, epoch: int) -> list[int]:
        # One generator per (seed, epoch): an epoch's order never depends on how many epochs ran before it.
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        if not self.group_by_modality_length:
            return torch.randperm(self.num_samples, generator=generator).tolist()
        # Megabatches of the *global* batch: LLaVA passes world_size x grad_accum as the sampler's world size.
        return modality_grouped_indices(
            self.lengths, self.multimodal, self.batch_size, self.world_size * self.grad_accum, generator
        )

    def step_indices(self, step: int) -> list[int]:
        """Sample indices of optimizer step ``step`` (counting from 0 across epochs)."""
        epoch, within = divmod(step, self.steps_per_epoch)
        start = within * self.global_batch
        return self.epoch_order(epoch)[start : start + self.global_batch]

    def micro_batches(self, step: int) -> list[list[int]]:
        """The ``world_size * grad_accum`` micro-batches of a step (contiguous, some empty in a short last step)."""
        chunk = self.step_indices(step)
        b = self.batch_size
        return [chunk[k * b : (k + 1) * b] for k in range(self.micro_batches_per_step)]

    def rank_micro_batches(self, step: int, rank: int) -> list[list[int]]:
        """The ``grad_accum`` micro-batches process ``rank`` runs at ``step``, in accumulation order."""
        batches = self.micro_batches(step)
        return [batches[a * self.world_size + rank] for a in range(self.grad_accum)]

    def fingerprint(self) -> dict[str, int | bool]:
        """What must stay equal for a resumed run to see the same samples at the same steps."""
        return {
            "num_samples": self.num_samples,
            "global_batch": self.global_batch,
            "seed": self.seed,
            "group_by_modality_length": self.group_by_modality_length,
        }


class StepBatchSampler(Sampler[list[int]]):
    """Yields one process's micro-batches (lists of indices, possibly empty) for steps ``start_step ... end_step``."""

    def __init__(self, plan: SamplingPlan, rank: int, start_step: int, end_step: int):
        if not 0 <= rank < plan.world_size:
            raise ValueError(f"rank {rank} is outside world size {plan.world_size}")
        self.plan = plan
        self.rank = rank
        self.start_step = start_step
        self.end_step = end_step

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            yield from self.plan.rank_micro_batches(step, self.rank)

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.plan.grad_accum
