"""The ablation statistics on cases whose answers are known in closed form or by exhaustive enumeration."""

import itertools
import math

import numpy as np
import pytest

from inf_llava.eval.significance import (
    bootstrap_accuracy,
    bootstrap_difference,
    claim,
    mcnemar_exact,
    paired_permutation,
)


def _pair(only_a: int, only_b: int, both: int = 7, neither: int = 3):
    a = [1] * only_a + [0] * only_b + [1] * both + [0] * neither
    b = [0] * only_a + [1] * only_b + [1] * both + [0] * neither
    return np.array(a), np.array(b)


@pytest.mark.parametrize(
    "only_a,only_b,expected",
    [(10, 0, 2 / 2**10), (0, 10, 2 / 2**10), (5, 5, 1.0), (3, 1, 2 * (1 + 4) / 16), (0, 0, 1.0), (7, 2, 2 * 46 / 512)],
)
def test_mcnemar_exact_matches_the_binomial_tail(only_a, only_b, expected):
    assert mcnemar_exact(*_pair(only_a, only_b)) == pytest.approx(expected, abs=1e-12)


def test_mcnemar_needs_one_run_each():
    a = np.ones((2, 5))
    with pytest.raises(ValueError, match="one run with one run"):
        mcnemar_exact(a, a)


def test_permutation_matches_exhaustive_enumeration():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, size=(3, 10))
    b = rng.integers(0, 2, size=(3, 10))
    diffs = (a - b).mean(axis=0)
    observed = abs(diffs.mean())
    flips = np.array(list(itertools.product((-1, 1), repeat=diffs.size)))
    exact = np.mean(np.abs((flips * diffs).mean(axis=1)) >= observed - 1e-12)
    assert paired_permutation(a, b, permutations=40_000) == pytest.approx(exact, abs=0.01)


def test_permutation_of_identical_runs_is_one_and_of_a_sweep_is_minimal():
    a = np.random.default_rng(0).integers(0, 2, size=(5, 40))
    assert paired_permutation(a, a) == 1.0
    assert paired_permutation(np.ones((5, 40)), np.zeros((5, 40)), permutations=999) == pytest.approx(1 / 1000)


def test_degenerate_intervals_are_exact():
    ones, zeros = np.ones((5, 30)), np.zeros((5, 30))
    interval = bootstrap_accuracy(ones, samples=200)
    assert (interval.mean, interval.low, interval.high) == (1.0, 1.0, 1.0)
    diff = bootstrap_difference(ones, zeros, samples=200)
    assert (diff.mean, diff.low, diff.high) == (1.0, 1.0, 1.0)
    same = bootstrap_difference(zeros, zeros, samples=200)
    assert (same.low, same.high) == (0.0, 0.0) and not same.excludes_zero()


def test_accuracy_interval_covers_the_true_mean_about_95_percent_of_the_time():
    """Runs drawn with a seed-level spread (sd 0.04 around 0.7) and a finite test set: the two-level bootstrap
    interval covers the population accuracy in roughly 95% of simulated experiments (5 seeds x 300 questions;
    a percentile bootstrap over 5 seeds is known to run a little narrow, hence the lower bound)."""
    rng = np.random.default_rng(11)
    covered, trials = 0, 120
    for trial in range(trials):
        seed_acc = np.clip(0.7 + 0.04 * rng.standard_normal(5), 0, 1)
        difficulty = rng.uniform(-0.2, 0.2, size=300)  # question effects shared by every seed
        p = np.clip(seed_acc[:, None] + difficulty[None], 0, 1)
        runs = (rng.random(p.shape) < p).astype(float)
        interval = bootstrap_accuracy(runs, samples=600, seed=trial)
        covered += interval.low <= 0.7 <= interval.high
    assert 0.82 <= covered / trials <= 1.0


def test_difference_interval_and_claim_see_a_real_gap_and_no_gap():
    rng = np.random.default_rng(5)
    base = (rng.random((5, 600)) < 0.6).astype(float)
    better = np.maximum(base, (rng.random((5, 600)) < 0.25).astype(float))  # ~ +0.10 on the same questions
    strong = claim("better beats base", better, base, samples=2000, permutations=2000)
    assert strong.holds and strong.verdict == "holds" and strong.p_value < 0.01
    assert strong.low <= strong.effect <= strong.high
    assert strong.effect == pytest.approx(better.mean() - base.mean())
    reverse = claim("base beats better", base, better, samples=2000, permutations=2000)
    assert reverse.verdict == "refuted" and not reverse.holds
    noise = (rng.random((5, 600)) < 0.6).astype(float)
    null = claim("noise beats base", noise, base, samples=2000, permutations=2000)
    assert null.verdict in {"undecided", "holds", "refuted"}
    assert (null.low <= 0 <= null.high) == (null.verdict == "undecided")
    assert "95% CI" in str(strong) and "5 seeds x 600 questions" in str(strong)
    assert strong.to_dict()["holds"] is True


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same seeds and questions"):
        bootstrap_difference(np.ones((5, 10)), np.ones((4, 10)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        bootstrap_accuracy(np.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_accuracy(np.ones((0, 3)))


def test_permutation_p_value_is_a_valid_test_under_the_null():
    """Under the null (both variants the same process), p <= 0.05 in about 5% of experiments."""
    rng = np.random.default_rng(2)
    rejections = 0
    trials = 150
    for trial in range(trials):
        a = (rng.random((3, 200)) < 0.5).astype(float)
        b = (rng.random((3, 200)) < 0.5).astype(float)
        rejections += paired_permutation(a, b, permutations=400, seed=trial) <= 0.05
    assert rejections / trials <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / trials)
