"""Statistics for comparing trained variants on per-question predictions: intervals, tests and claims.

A run is one (variant, seed); its result on a test split is a 0/1 vector over the questions. Comparisons are paired
twice over: seed ``s`` of one variant is paired with seed ``s`` of the other (same data order, same initial draw
where the architectures allow it), and question ``q`` with question ``q``. So every function here takes ``(seeds,
questions)`` arrays of 0/1 with the same seeds and questions in the same order.

- :func:`bootstrap_accuracy` / :func:`bootstrap_difference`: mean and 95% percentile interval from a two-level
  bootstrap that resamples seeds and questions (the same resample for both variants: paired), so the interval
  covers both the seed-to-seed spread of training and the finite test set.
- :func:`mcnemar_exact`: McNemar's exact test on one pair of runs (the two-sided binomial test on the discordant
  questions).
- :func:`paired_permutation`: a sign-flip permutation test on the per-question differences averaged over seeds.
- :func:`claim`: "A beats B" with its effect size, interval and p-value; it *holds* only when the interval excludes
  zero on the claimed side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 10_000
PERMUTATIONS = 10_000
_CHUNK = 500  # bootstrap replicates drawn at once (bounds the index arrays' memory)


def _as_runs(correct, name: str = "correct") -> np.ndarray:
    array = np.asarray(correct, dtype=np.float64)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty (seeds, questions) array of 0/1, got shape {array.shape}")
    if not np.isin(array, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold only 0 and 1 (correct or not per question)")
    return array


def _paired(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_runs(a, "a"), _as_runs(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same seeds and questions, got shapes {a.shape} and {b.shape}")
    return a, b


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    confidence: float = CONFIDENCE

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def _bootstrap(values: np.ndarray, samples: int, seed: int, confidence: float) -> Interval:
    """Percentile interval of the mean of ``values`` (seeds x questions) under resampling of both axes."""
    rng = np.random.default_rng(seed)
    n_seeds, n_questions = values.shape
    means = np.empty(samples)
    for start in range(0, samples, _CHUNK):
        count = min(_CHUNK, samples - start)
        seed_idx = rng.integers(0, n_seeds, size=(count, n_seeds))
        question_idx = rng.integers(0, n_questions, size=(count, n_questions))
        # mean over resampled seeds of the mean over resampled questions (same questions for every seed)
        per_seed = values[seed_idx[:, :, None], question_idx[:, None, :]].mean(axis=2)
        means[start : start + count] = per_seed.mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return Interval(float(values.mean()), float(low), float(high), confidence)


def bootstrap_accuracy(
    correct, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> Interval:
    """Accuracy of one variant (mean over seeds and questions) with its two-level bootstrap interval."""
    return _bootstrap(_as_runs(correct), samples, seed, confidence)


def bootstrap_difference(
    a, b, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> Interval:
    """Accuracy of ``a`` minus accuracy of ``b``, paired by seed and by question."""
    a, b = _paired(a, b)
    return _bootstrap(a - b, samples, seed, confidence)


def mcnemar_exact(a, b) -> float:
    """Two-sided exact McNemar p-value for one pair of runs (1-D 0/1 vectors over the same questions): the
    binomial test of the discordant counts against 1/2."""
    a, b = _paired(a, b)
    if a.shape[0] != 1:
        raise ValueError("mcnemar_exact compares one run with one run; average seeds with paired_permutation")
    only_a = int(((a == 1) & (b == 0)).sum())
    only_b = int(((a == 0) & (b == 1)).sum())
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_permutation(a, b, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Two-sided p-value of the mean per-question difference (averaged over seeds) under random sign flips of
    whole questions (exchanging the two variants' answers on a question, in every seed at once). Uses the
    ``(count + 1) / (permutations + 1)`` estimate, so it is never 0."""
    a, b = _paired(a, b)
    diffs = (a - b).mean(axis=0)
    observed = abs(diffs.mean())
    nonzero = diffs[diffs != 0]
    if nonzero.size == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, permutations, _CHUNK):
        count = min(_CHUNK, permutations - start)
        signs = rng.choice((-1.0, 1.0), size=(count, nonzero.size))
        stats = np.abs((signs * nonzero).sum(axis=1) / diffs.size)
        hits += int((stats >= observed - 1e-12).sum())
    return (hits + 1) / (permutations + 1)


@dataclass(frozen=True)
class Claim:
    """``a`` beats ``b`` (on one question kind or overall), with the evidence."""

    statement: str
    effect: float  # accuracy(a) - accuracy(b)
    low: float
    high: float
    p_value: float  # paired permutation test
    seeds: int
    questions: int

    @property
    def holds(self) -> bool:
        """The interval excludes zero on the claimed side."""
        return self.low > 0

    @property
    def refuted(self) -> bool:
        """The interval excludes zero on the other side (``b`` is better)."""
        return self.high < 0

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else "refuted" if self.refuted else "undecided"

    def to_dict(self) -> dict:
        return {**asdict(self), "holds": self.holds, "verdict": self.verdict}

    def __str__(self) -> str:
        return (
            f"{self.statement}: {self.verdict} (difference {self.effect:+.3f}, 95% CI [{self.low:+.3f}, "
            f"{self.high:+.3f}], paired permutation p = {self.p_value:.3g}, {self.seeds} seeds x {self.questions} "
            "questions)"
        )


def claim(statement: str, a, b, *, samples: int = BOOTSTRAP_SAMPLES, permutations: int = PERMUTATIONS) -> Claim:
    a, b = _paired(a, b)
    interval = bootstrap_difference(a, b, samples=samples)
    return Claim(
        statement,
        interval.mean,
        interval.low,
        interval.high,
        paired_permutation(a, b, permutations=permutations),
        seeds=a.shape[0],
        questions=a.shape[1],
    )
