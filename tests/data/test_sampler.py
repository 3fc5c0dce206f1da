import random

import pytest
import torch

from inf_llava.data.sampler import (
    SamplingPlan,
    StepBatchSampler,
    modality_grouped_indices,
    split_to_even_chunks,
)


def _covered(plan: SamplingPlan, epoch: int) -> list[int]:
    steps = range(epoch * plan.steps_per_epoch, (epoch + 1) * plan.steps_per_epoch)
    return [i for step in steps for batch in plan.micro_batches(step) for i in batch]


@pytest.mark.parametrize(("n", "batch", "world", "accum"), [(23, 2, 2, 1), (23, 1, 2, 2), (16, 4, 1, 1), (5, 3, 2, 2)])
def test_every_epoch_uses_every_sample_exactly_once(n, batch, world, accum):
    plan = SamplingPlan(n, batch, world, accum, seed=3)
    for epoch in range(3):
        seen = _covered(plan, epoch)
        assert sorted(seen) == list(range(n))
    assert plan.epoch_order(0) != plan.epoch_order(1)


def test_same_global_batch_same_samples_per_step_whatever_the_split():
    splits = [(4, 1, 1), (2, 2, 1), (1, 2, 2), (2, 1, 2), (1, 4, 1)]
    plans = [SamplingPlan(30, b, w, a, seed=7) for b, w, a in splits]
    for step in range(2 * plans[0].steps_per_epoch):
        sets = [sorted(i for batch in p.micro_batches(step) for i in batch) for p in plans]
        assert all(s == sets[0] for s in sets)


def test_ranks_and_accumulation_steps_partition_a_step():
    plan = SamplingPlan(20, 2, 2, 2, seed=0)
    for step in range(plan.steps_per_epoch):
        per_rank = [plan.rank_micro_batches(step, rank) for rank in range(2)]
        # micro-batch k goes to rank k % world, accumulation step k // world (HF + accelerate semantics)
        assert [per_rank[k % 2][k // 2] for k in range(4)] == plan.micro_batches(step)


def test_short_last_step_gives_empty_micro_batches_not_repeats():
    plan = SamplingPlan(9, 2, 2, 1, seed=0)
    last = plan.micro_batches(plan.steps_per_epoch - 1)
    assert [len(b) for b in last] == [1, 0]


def test_order_is_seeded_and_deterministic():
    a, b, c = SamplingPlan(50, 2, seed=1), SamplingPlan(50, 2, seed=1), SamplingPlan(50, 2, seed=2)
    assert a.epoch_order(4) == b.epoch_order(4)
    assert a.epoch_order(0) != c.epoch_order(0)


def test_resumed_sampler_continues_exactly_where_the_full_one_was():
    plan = SamplingPlan(37, 3, 2, 2, seed=5)
    total = 3 * plan.steps_per_epoch
    for rank in range(2):
        full = list(StepBatchSampler(plan, rank, 0, total))
        resumed = list(StepBatchSampler(plan, rank, 7, total))
        assert resumed == full[7 * plan.grad_accum :]
        assert len(StepBatchSampler(plan, rank, 7, total)) == len(resumed)


def test_split_to_even_chunks():
    lengths = [10, 9, 8, 1, 1, 1]
    # greedy: each index joins the lightest chunk that is not full
    assert split_to_even_chunks([0, 1, 2, 3, 4, 5], lengths, 2) == [[0, 3, 4], [1, 2, 5]]
    assert split_to_even_chunks([0, 1, 2, 3, 4], lengths, 2) == [[0, 2, 4], [1, 3]]  # uneven: round-robin


def test_modality_grouping_keeps_megabatches_single_modality_and_length_sorted():
    rng = random.Random(0)
    n, batch, chunks = 103, 4, 2
    multimodal = [rng.random() < 0.6 for _ in range(n)]
    lengths = [rng.randrange(1, 200) for _ in range(n)]
    order = modality_grouped_indices(lengths, multimodal, batch, chunks, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(n))
    size = batch * chunks
    mm_count, lang_count = sum(multimodal), n - sum(multimodal)
    full = (mm_count // size - (mm_count % size == 0)) + (lang_count // size - (lang_count % size == 0))
    for k in range(full):
        megabatch = order[k * size : (k + 1) * size]
        assert len({multimodal[i] for i in megabatch}) == 1
        for chunk in (megabatch[j * batch : (j + 1) * batch] for j in range(chunks)):
            assert [lengths[i] for i in chunk] == sorted((lengths[i] for i in chunk), reverse=True)
    tail = order[full * size :]
    assert tail == sorted(tail)  # the two leftover megabatches, merged and sorted by index (spec 13.5)


def test_grouped_plan_uses_the_global_batch_as_megabatch():
    multimodal = tuple(i % 3 != 0 for i in range(40))
    lengths = tuple((i * 7) % 23 + 1 for i in range(40))
    plan = SamplingPlan(40, 2, 2, 2, seed=1, group_by_modality_length=True, lengths=lengths, multimodal=multimodal)
    first = plan.step_indices(0)
    assert len(first) == plan.global_batch == 8 and len({multimodal[i] for i in first}) == 1
    assert sorted(_covered(plan, 0)) == list(range(40))


def test_plan_validation():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        SamplingPlan(10, 0)
    with pytest.raises(ValueError, match="needs per-sample lengths"):
        SamplingPlan(10, 2, group_by_modality_length=True)
    with pytest.raises(ValueError, match="rank 2 is outside world size 2"):
        StepBatchSampler(SamplingPlan(10, 2, 2), 2, 0, 1)
