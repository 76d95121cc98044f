"""A deployable threshold: chosen at a target FMR on one set of pairs, measured on another.

Convention throughout (as ``verification``'s accuracy threshold): a pair is ACCEPTED
(declared the same person) iff ``score > threshold``. FMR is the share of impostor pairs
accepted, FNMR the share of genuine pairs rejected.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from evaluations import _inputs
from evaluations.metric_warnings import UndefinedMetricWarning


def check_fmr(fmr: Any) -> float:
    """``fmr`` as a float in (0, 1]; a one-line ValueError otherwise."""
    if isinstance(fmr, bool) or not isinstance(fmr, (int, float, np.integer, np.floating)) or not 0.0 < float(fmr) <= 1.0:
        raise ValueError(f"fmr={fmr!r} must be a false match rate in (0, 1]")
    return float(fmr)


def allowed_false_matches(fmr: float, n_impostor: int | float) -> int:
    """k = floor(fmr * n_impostor), guarded against 0.001 * 3000 = 2.9999... rounding."""
    return int(math.floor(fmr * n_impostor * (1.0 + 1e-12)))


def weighted_threshold(impostor_desc: np.ndarray, weight_desc: np.ndarray, fmr: float) -> float:
    """Threshold of impostor scores sorted descending, each counted ``weight`` times:
    the (k+1)-th largest unit, k = floor(fmr * total weight); -inf when k >= total
    (everything may be accepted); NaN when the total weight is 0."""
    cum = np.cumsum(weight_desc)
    total = cum[-1] if cum.shape[0] else 0
    if total <= 0:
        return float("nan")
    k = allowed_false_matches(fmr, total)
    if k >= total:
        return float("-inf")
    return float(impostor_desc[int(np.searchsorted(cum, k, side="right"))])


def calibrate_threshold(scores: Any, same: Any, fmr: float) -> float:
    """Lowest threshold whose false match rate on these pairs is at most ``fmr``.

    With the impostor scores sorted descending, s_(1) >= s_(2) >= ..., and
    :math:`k = \\lfloor \\mathrm{fmr} \\cdot n_{impostor} \\rfloor`, the threshold is
    :math:`t = s_{(k+1)}`: accepting iff ``score > t`` lets at most k impostors through
    (fewer where impostor scores tie at t). Every lower threshold among the scores lets
    more than k through.

    Args:
        scores: [P] pair scores, higher = more alike (e.g. :func:`evaluations.pair_scores`).
        same: [P] bool, True for genuine pairs. Only the impostor pairs set the threshold.
        fmr: target false match rate in (0, 1]. Below 1 / n_impostor, k = 0 and the
            threshold is the highest impostor score (FMR 0 on these pairs, a target
            these pairs cannot resolve).

    Returns:
        float threshold; ``-inf`` when k >= n_impostor (fmr = 1); NaN with an
        UndefinedMetricWarning when there is no impostor pair.

    >>> calibrate_threshold([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 0, 0, 0, 0, 1], fmr=0.25)
    0.7
    """
    s, y = _inputs.scores_and_same(scores, same)
    fmr = check_fmr(fmr)
    impostor = np.sort(s[~y])[::-1]
    if impostor.shape[0] == 0:
        warnings.warn("no impostor pairs (same is all True): the threshold at a target FMR is undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    return weighted_threshold(impostor, np.ones(impostor.shape[0], dtype=np.int64), fmr)


def operating_point(scores: Any, same: Any, threshold: float) -> dict:
    """FMR and FNMR that a fixed threshold gives on a set of pairs (accept iff ``score > threshold``).

    Args:
        scores: [P] pair scores, higher = more alike.
        same: [P] bool, True for genuine pairs.
        threshold: e.g. from :func:`calibrate_threshold` on other (validation) pairs.

    Returns:
        dict with ``fmr`` (impostors accepted / impostors), ``fnmr`` (genuine rejected /
        genuine), ``n_genuine``, ``n_impostor``, ``threshold``. A rate without pairs to
        count is NaN with an UndefinedMetricWarning.

    >>> r = operating_point([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 0, 0, 0, 0, 1], 0.7)
    >>> r["fmr"], r["fnmr"]
    (0.25, 0.5)
    """
    s, y = _inputs.scores_and_same(scores, same)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) or math.isnan(float(threshold)):
        raise ValueError(f"threshold={threshold!r} must be a number (not NaN); calibrate it on pairs with impostors")
    accept = s > float(threshold)
    n_genuine, n_impostor = int(y.sum()), int((~y).sum())
    if n_impostor == 0:
        warnings.warn("no impostor pairs: the false match rate is undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
    if n_genuine == 0:
        warnings.warn("no genuine pairs: the false non-match rate is undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
    return {
        "fmr": float(np.count_nonzero(accept & ~y) / n_impostor) if n_impostor else float("nan"),
        "fnmr": float(np.count_nonzero(~accept & y) / n_genuine) if n_genuine else float("nan"),
        "n_genuine": n_genuine,
        "n_impostor": n_impostor,
        "threshold": float(threshold),
    }
