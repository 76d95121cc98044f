"""QMagFace's quality-aware comparison score: a linear, score-dependent quality correction.

Terhörst, Ihlefeld, Huber, Boutros, Damer, Kirchbuchner, Kuijper, "QMagFace: Simple and
Accurate Quality-Aware Face Recognition", WACV 2023 (arXiv:2111.13475), sec. 3:

.. math::  \\hat s = s + \\omega(s)\\, q, \\qquad \\omega(s) = \\min(0,\\ \\beta s - \\alpha),
           \\qquad q = \\min(q_a, q_b)

with ``q`` a pair's quality (MagFace: the lower feature norm). Fitting (:func:`fit_qmagface`):
for each of a log-spaced grid of FMRs, the weight ``omega`` of a grid that gives the lowest
FNMR of ``s + omega q`` at that FMR, and the threshold ``t`` that reaches it; a least-squares
line ``omega = beta t - alpha`` through those points. Low comparison scores then get their
low-quality pairs pushed further down (omega < 0) and high scores are left alone.

Departure from the official code (pterhoer/QMagFace, ``similarity/qmagface.py``): it passes
``s + omega q`` through a logistic function before reading thresholds off the ROC, so its
fitted line relates omega to thresholds on the logistic scale while the score applies it to
raw cosines. We follow the paper: thresholds on the scale of ``s`` itself.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from evaluations import _inputs
from evaluations.calibration import allowed_false_matches, check_fmr


def qmagface_scores(scores: Any, quality_a: Any, quality_b: Any, *, alpha: float, beta: float) -> np.ndarray:
    """``s + min(0, beta s - alpha) min(q_a, q_b)`` for each pair (float64 ``[P]``).

    >>> qmagface_scores([0.9, 0.1], [10.0, 10.0], [20.0, 5.0], alpha=0.5, beta=1.0).round(6).tolist()
    [0.9, -1.9]
    """
    s = np.asarray(scores, dtype=np.float64)
    q = np.minimum(np.asarray(quality_a, dtype=np.float64), np.asarray(quality_b, dtype=np.float64))
    if q.shape != s.shape:
        raise ValueError(f"quality_a and quality_b must be [P] = [{s.shape[0]}] like scores, got {q.shape}")
    if not (np.isfinite(alpha) and np.isfinite(beta)):
        raise ValueError(f"alpha={alpha!r} and beta={beta!r} must be finite; fit them with fit_qmagface")
    return s + np.minimum(0.0, beta * s - alpha) * q


def _fnmrs_and_thresholds(s: np.ndarray, y: np.ndarray, fmrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per target FMR: FNMR (accept iff score > t) at the lowest threshold t with FMR <= fmr, and t.

    :func:`evaluations.calibrate_threshold`'s rule for all the FMRs at once: the fit needs it for 50
    FMRs x 20 weights, and this sorts the impostors once per weight instead of once per pair of them."""
    impostor = np.sort(s[~y])[::-1]
    genuine = np.sort(s[y])
    k = np.array([allowed_false_matches(f, impostor.shape[0]) for f in fmrs])
    t = np.where(k < impostor.shape[0], impostor[np.minimum(k, impostor.shape[0] - 1)], -np.inf)
    return np.searchsorted(genuine, t, side="right") / genuine.shape[0], t


def fit_qmagface(
    scores: Any,
    same: Any,
    quality_a: Any,
    quality_b: Any,
    *,
    fmrs: Any = None,
    weights: int = 20,
    max_ratio: float = 0.5,
) -> dict:
    """Fit QMagFace's ``alpha`` and ``beta`` on (validation) pairs.

    Args:
        scores: [P] comparison scores (cosine), higher = more alike.
        same: [P] bool, True for genuine pairs.
        quality_a, quality_b: [P] quality of each pair's images (feature norms), higher = better.
        fmrs: the FMRs at which the best weight is sought; default 50 log-spaced in
            [1e-5, 1e-2] (the paper's), clipped below at 10 / n_impostor so that every
            target rests on at least 10 impostors.
        weights: candidate omegas, evenly spaced in ``[-w, w]`` with
            ``w = max_ratio / max(q)`` (the official code's grid).
        max_ratio: see ``weights``.

    Returns:
        dict with ``alpha``, ``beta`` (floats), and the points fitted: ``fmrs``,
        ``thresholds``, ``omegas`` (float64 arrays).
    """
    s, y = _inputs.scores_and_same(scores, same)
    q = np.minimum(np.asarray(quality_a, dtype=np.float64), np.asarray(quality_b, dtype=np.float64))
    if q.shape != s.shape:
        raise ValueError(f"quality_a and quality_b must be [P] = [{s.shape[0]}] like scores, got {q.shape}")
    if not np.isfinite(q).all() or (q <= 0).any():
        raise ValueError("qualities must be finite and > 0 (feature norms)")
    n_genuine, n_impostor = int(y.sum()), int((~y).sum())
    if n_genuine == 0 or n_impostor < 10:
        raise ValueError(f"fitting needs genuine pairs and at least 10 impostors, got {n_genuine} and {n_impostor}")
    if isinstance(weights, bool) or not isinstance(weights, (int, np.integer)) or weights < 2:
        raise ValueError(f"weights={weights!r} must be a number of candidate omegas >= 2")
    if not max_ratio > 0:
        raise ValueError(f"max_ratio={max_ratio!r} must be > 0")
    if fmrs is None:
        fmrs = np.logspace(-5, -2, 50)
    fmrs = np.unique(np.clip([check_fmr(f) for f in np.atleast_1d(fmrs)], 10.0 / n_impostor, None))
    w = max_ratio / q.max()
    omegas = np.linspace(-w, w, weights)
    best_omega, best_t = np.empty(fmrs.shape[0]), np.empty(fmrs.shape[0])
    best_fnmr = np.full(fmrs.shape[0], np.inf)
    for omega in omegas:
        fnmr, t = _fnmrs_and_thresholds(s + omega * q, y, fmrs)
        better = fnmr < best_fnmr  # strict: ties keep the first (most negative) omega, as argmin does
        best_fnmr[better], best_omega[better], best_t[better] = fnmr[better], omega, t[better]
    if fmrs.shape[0] < 2 or np.ptp(best_t) == 0:
        slope, intercept = 0.0, float(best_omega.mean())
    else:
        slope, intercept = np.polyfit(best_t, best_omega, 1)
    return {"alpha": float(-intercept), "beta": float(slope), "fmrs": fmrs, "thresholds": best_t, "omegas": best_omega}
