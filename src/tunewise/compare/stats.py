"""How sure is a gap? A paired bootstrap over test messages and seeds.

Two recipes of a comparison are scored on the same test messages with the same seeds, so
their difference is measured pairwise: each bootstrap replicate draws the test messages
with replacement (the same draw for every run) and the seed pairs with replacement, and
recomputes the mean over seeds of (macro-F1 of A - macro-F1 of B). The 2.5th and 97.5th
percentiles of the replicates are the 95% interval. An interval that includes zero is a
tie: the data cannot tell the two apart.

Example:
    >>> gold = np.array([0, 1] * 50)
    >>> good = [gold.copy()]                     # always right
    >>> bad = [np.zeros_like(gold)]              # always says class 0
    >>> gap = paired_gap(gold, good, bad, n_labels=2)
    >>> round(gap.points, 1), gap.low > 0
    (66.7, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class GapCI:
    """A gap in macro-F1 points (A - B), its confidence interval and what it rests on."""

    points: float
    low: float
    high: float
    seeds: int
    messages: int

    @property
    def tie(self) -> bool:
        return self.low <= 0 <= self.high

    def fmt(self) -> str:
        """``+3.1 [+0.4, +5.9]``

        Example:
            >>> GapCI(3.14, 0.4, 5.9, 3, 900).fmt()
            '+3.1 [+0.4, +5.9]'
        """
        return f"{self.points:+.1f} [{self.low:+.1f}, {self.high:+.1f}]"


def macro_f1_weighted(gold: np.ndarray, pred: np.ndarray, weights: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro-F1 of ``pred`` under each row of ``weights`` (message counts of a resample).

    ``weights`` is (replicates x messages); the result has one value per replicate. With
    all-ones weights it is scikit-learn's macro-F1 over ``n_labels`` classes (zero_division=0).

    Example:
        >>> g, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
        >>> round(float(macro_f1_weighted(g, p, np.ones((1, 4)), 2)[0]), 4)
        0.7333
    """
    f1 = np.zeros((weights.shape[0], n_labels))
    for k in range(n_labels):
        tp = weights @ ((pred == k) & (gold == k))
        predicted = weights @ (pred == k)
        actual = weights @ (gold == k)
        denom = predicted + actual
        f1[:, k] = np.divide(2 * tp, denom, out=np.zeros_like(denom, dtype=float), where=denom > 0)
    return f1.mean(axis=1)


def paired_gap(
    gold: np.ndarray,
    preds_a: list[np.ndarray],
    preds_b: list[np.ndarray],
    *,
    n_labels: int,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> GapCI:
    """Mean over seed pairs of macro-F1(A) - macro-F1(B), in points, with a bootstrap interval.

    ``preds_a[i]`` and ``preds_b[i]`` are the test predictions of the two recipes with the
    same seed, in the order of ``gold``.
    """
    if len(preds_a) != len(preds_b) or not preds_a:
        raise ValueError("paired_gap needs the same, non-zero number of runs on each side")
    gold = np.asarray(gold)
    n, s = len(gold), len(preds_a)
    rng = np.random.default_rng(seed)
    ones = np.ones((1, n))
    per_seed = np.array(
        [
            macro_f1_weighted(gold, np.asarray(a), ones, n_labels)[0]
            - macro_f1_weighted(gold, np.asarray(b), ones, n_labels)[0]
            for a, b in zip(preds_a, preds_b, strict=True)
        ]
    )
    weights = rng.multinomial(n, np.full(n, 1 / n), size=resamples).astype(float)
    diffs = np.stack(
        [
            macro_f1_weighted(gold, np.asarray(a), weights, n_labels)
            - macro_f1_weighted(gold, np.asarray(b), weights, n_labels)
            for a, b in zip(preds_a, preds_b, strict=True)
        ],
        axis=1,
    )  # (replicates x seeds)
    seed_draw = rng.integers(0, s, size=(resamples, s))
    replicates = np.take_along_axis(diffs, seed_draw, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(replicates, [tail, 1 - tail])
    return GapCI(100 * float(per_seed.mean()), 100 * float(low), 100 * float(high), s, n)
