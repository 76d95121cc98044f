"""Is the best method's lead real? Paired tests between methods of one comparison.

With several seeds, a paired t-test across seeds on verification accuracy (the same seed means
the same initial backbone and batches, so seeds pair the runs). With one seed, a paired bootstrap
over the verification pairs on ROC AUC (both methods scored on the same resampled pairs).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as scipy_stats

ALPHA = 0.05


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


def _auc(scores: np.ndarray, same: np.ndarray) -> np.ndarray:
    """AUC of each row of ``scores`` [R, P] against the labels ``same`` [R, P] (Mann-Whitney, ties halved)."""
    ranks = scipy_stats.rankdata(scores, axis=1)
    n_pos = same.sum(axis=1)
    n_neg = same.shape[1] - n_pos
    return ((ranks * same).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def bootstrap_auc(scores_a: np.ndarray, scores_b: np.ndarray, same: np.ndarray, *, resamples: int = 1000,
                  seed: int = 0) -> float:
    """Two-sided p-value that AUC(a) = AUC(b), by a paired bootstrap over the pairs.

    p = 2 * min(share of resamples with AUC(a) - AUC(b) <= 0, share with >= 0), capped at 1.
    """
    scores_a, scores_b, same = np.asarray(scores_a), np.asarray(scores_b), np.asarray(same, dtype=bool)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(same), size=(resamples, len(same)))
    s = same[idx]
    valid = (s.sum(axis=1) > 0) & (s.sum(axis=1) < len(same))
    diff = _auc(scores_a[idx][valid], s[valid]) - _auc(scores_b[idx][valid], s[valid])
    return float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean())))
