"""Is a method's lead over the others real? Paired comparisons between the methods of one comparison.

Runs of two methods with the same seed start from the same initial backbone and see the same
batches, so seeds pair the runs: the difference of a metric is taken seed by seed, and its mean
gets a 95% confidence interval (Student's t over seeds) and a two-sided paired t-test. Comparing
every method with the best one is several tests at once: :func:`versus_best` corrects their
p-values by Holm's step-down method, so "significant" holds for the family of comparisons at
:data:`ALPHA`. With fewer than two common seeds no test is possible: the variation between seeds is
unknown, and the spread over test pairs of one trained model says nothing about another training run.

These are pure functions of per-seed scores; :mod:`mlcompare.run.comparison_tests` applies them when a run
finishes and saves what the report shows.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05
CONFIDENCE = 0.95


def paired_t(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of a paired t-test of ``a - b`` (NaN with fewer than 2 pairs)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"paired_t needs as many values in a ({len(a)}) as in b ({len(b)})")
    if len(a) < 2:
        return math.nan
    diff = a - b
    if np.allclose(diff, diff[0]):  # no spread: the t statistic is undefined
        return 1.0 if diff[0] == 0 else 0.0
    return float(scipy_stats.ttest_rel(a, b).pvalue)


@dataclass(frozen=True)
class Difference:
    """``a - b`` over ``n`` paired seeds: its mean, the ``CONFIDENCE`` interval of the mean
    (``low``, ``high``; NaN with one seed), the paired t-test's two-sided ``p`` and, once corrected
    for the comparisons made with it, ``p_holm`` (NaN until then, and with one seed)."""

    mean: float
    low: float
    high: float
    p: float
    n: int
    p_holm: float = math.nan

    @property
    def significant(self) -> bool:
        """The corrected test rejects "no difference" at :data:`ALPHA` (False where untested)."""
        return self.p_holm < ALPHA


def paired_difference(a: np.ndarray, b: np.ndarray, *, confidence: float = CONFIDENCE) -> Difference:
    """Mean of ``a - b`` (paired values, e.g. one per seed) with its t confidence interval:
    mean ± t_{(1+confidence)/2, n-1} * sd / sqrt(n), and the paired t-test's p (see :func:`paired_t`).

    No spread gives the interval [mean, mean]; one pair gives NaN for the interval and p.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    p = paired_t(a, b)
    diff = a - b
    mean = float(diff.mean()) if len(diff) else math.nan
    if len(diff) < 2:
        return Difference(mean, math.nan, math.nan, p, len(diff))
    half = half_width(float(diff.std(ddof=1)), len(diff), confidence=confidence)
    return Difference(mean, mean - half, mean + half, p, len(diff))


def half_width(std: float, n: int, *, confidence: float = CONFIDENCE) -> float:
    """Half-width of the t confidence interval of a mean of ``n`` values of sample std ``std``
    (t_{(1+confidence)/2, n-1} * std / sqrt(n)); NaN for n < 2."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    return float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1) * std / math.sqrt(n))


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (Holm 1979), in the order given.

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).
    Rejecting where the adjusted p < alpha controls the family-wise error rate at alpha. NaN
    entries (untested comparisons) stay NaN and do not count in m.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[idx]))
        out[idx] = running
    return out


def versus_best(scores: Mapping[str, Mapping[int, float]], best: str) -> dict[str, Difference]:
    """Every method of ``scores`` (method -> seed -> score) other than ``best`` against ``best``:
    method - best over their common seeds, with the p-values Holm-corrected over all these comparisons."""
    diffs = {}
    for method, values in scores.items():
        if method == best:
            continue
        common = sorted(set(values) & set(scores[best]))
        diffs[method] = paired_difference(np.array([values[s] for s in common]),
                                          np.array([scores[best][s] for s in common]))
    adjusted = holm([d.p for d in diffs.values()])
    return {m: Difference(d.mean, d.low, d.high, d.p, d.n, float(q)) for (m, d), q in zip(diffs.items(), adjusted)}
