"""1:1 verification: ROC, AUC, EER, TAR at FAR and the LFW 10-fold accuracy."""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from evaluations import _inputs
from evaluations.metric_warnings import UndefinedMetricWarning


def roc(scores: Any, same: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ROC curve (every distinct threshold), as ``sklearn.metrics.roc_curve``
    with ``drop_intermediate=False``: a pair is accepted when score >= threshold.

    Returns ``(fpr, tpr, thresholds)``, float64, starting at (0, 0, +inf).
    Without impostor (genuine) pairs, fpr (tpr) is NaN with an UndefinedMetricWarning.
    """
    s, y = _inputs.scores_and_same(scores, same)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]
    tps = np.cumsum(y)[last_of_value].astype(np.float64)
    fps = (last_of_value + 1) - tps
    tps, fps = np.r_[0.0, tps], np.r_[0.0, fps]
    thresholds = np.r_[np.inf, s[last_of_value]]
    with np.errstate(invalid="ignore", divide="ignore"):
        if fps[-1] <= 0:
            warnings.warn("no impostor pairs (same is all True): the false positive rate is undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
            fpr = np.full_like(fps, np.nan)
        else:
            fpr = fps / fps[-1]
        if tps[-1] <= 0:
            warnings.warn("no genuine pairs (same is all False): the true positive rate is undefined (NaN)", UndefinedMetricWarning, stacklevel=2)
            tpr = np.full_like(tps, np.nan)
        else:
            tpr = tps / tps[-1]
    return fpr, tpr, thresholds


def equal_error_rate(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Rate where FPR = FNR (= 1 - TPR), linearly interpolated between ROC points."""
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    gap = fpr - (1.0 - tpr)  # rises from -1 at (0, 0) to +1 at (1, 1)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(fpr: np.ndarray, tpr: np.ndarray, far: float, n_impostor: int) -> float | None:
    """TPR at FPR = ``far``, linearly interpolated on the ROC's upper envelope;
    None when ``far < 1 / n_impostor`` (fewer than one false accept: not measurable)."""
    if n_impostor == 0 or far < 1.0 / n_impostor:
        return None
    if np.isnan(tpr).any():
        return float("nan")
    # At a vertical step of the ROC, several points share one FPR: take the best TPR.
    ufpr, first = np.unique(fpr, return_index=True)
    best_tpr = np.maximum.reduceat(tpr, first)  # fpr is non-decreasing along the ROC
    return float(np.interp(far, ufpr, best_tpr))


def _best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    """Threshold t (accept iff score > t) maximising accuracy on (s, y); among equal
    accuracies the highest t. Candidates: +inf, midpoints between distinct scores, -inf."""
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_value = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]
    n_accept = np.r_[0, last_of_value + 1]
    tp = np.r_[0, np.cumsum(y)[last_of_value]]
    fp = n_accept - tp
    correct = tp + (np.count_nonzero(~y) - fp)
    best = int(np.argmax(correct))
    m = n_accept[best]
    if m == 0:
        return float("inf")
    if m == s.shape[0]:
        return float("-inf")
    return float((s[m - 1] + s[m]) / 2.0)


def kfold_accuracy(scores: Any, same: Any, *, folds: int = 10) -> tuple[float, float, np.ndarray]:
    """LFW protocol accuracy: ``folds`` contiguous blocks of the pairs in the given
    order (``np.array_split``); for each, the threshold maximising accuracy on the
    other blocks is applied to it. Returns (mean, std with ddof=0, per-fold accuracies)."""
    s, y = _inputs.scores_and_same(scores, same)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or not 2 <= folds <= s.shape[0]:
        raise ValueError(f"folds={folds!r} must be an integer in [2, number of pairs = {s.shape[0]}]")
    blocks = np.array_split(np.arange(s.shape[0]), folds)
    accs = np.empty(folds)
    for f, test in enumerate(blocks):
        train = np.ones(s.shape[0], dtype=bool)
        train[test] = False
        t = _best_threshold(s[train], y[train])
        accs[f] = np.mean((s[test] > t) == y[test])
    return float(accs.mean()), float(accs.std()), accs


def verification(
    scores: Any,
    same: Any,
    *,
    folds: int = 10,
    far: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4),
) -> dict:
    """1:1 verification metrics of scored pairs (higher score = more likely the same person).

    Args:
        scores: [P] pair scores, e.g. from :func:`evaluations.pair_scores`.
        same: [P] bool, True for genuine (same identity) pairs.
        folds: blocks for the LFW-protocol accuracy (contiguous, in the given pair
            order, as LFW's pairs.txt lists its 10 folds).
        far: false accept rates at which to report the true accept rate.

    Returns:
        dict with ``accuracy`` / ``accuracy_std`` (mean / std over folds of the
        accuracy with the threshold chosen on the other folds), ``auc`` (area
        under the ROC, = sklearn ``roc_auc_score``), ``eer`` (equal error rate,
        interpolated), ``tar_at_far`` ({far: TAR interpolated on the ROC, or None
        where far < 1/n_impostor, i.e. not measurable}), ``n_genuine``,
        ``n_impostor`` and the ROC arrays ``fpr``, ``tpr``, ``thresholds``
        (accept iff score >= threshold). Without impostor or genuine pairs, AUC,
        EER and TAR are NaN (or None) with an UndefinedMetricWarning.

    >>> r = verification([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0], folds=3, far=(0.5, 0.1))
    >>> round(r["auc"], 4), round(r["eer"], 4), r["tar_at_far"]
    (0.8889, 0.3333, {0.5: 1.0, 0.1: None})
    """
    s, y = _inputs.scores_and_same(scores, same)
    far = tuple(float(f) for f in far)
    for f in far:
        if not 0.0 < f <= 1.0:
            raise ValueError(f"far contains {f}; each false accept rate must be in (0, 1]")
    accuracy, accuracy_std, _ = kfold_accuracy(s, y, folds=folds)  # validates folds first
    n_genuine, n_impostor = int(y.sum()), int((~y).sum())
    fpr, tpr, thresholds = roc(s, y)
    degenerate = n_genuine == 0 or n_impostor == 0
    auc = float("nan") if degenerate else float(np.trapezoid(tpr, fpr))
    return {
        "accuracy": accuracy,
        "accuracy_std": accuracy_std,
        "auc": auc,
        "eer": equal_error_rate(fpr, tpr),
        "tar_at_far": {f: tar_at_far(fpr, tpr, f, n_impostor) for f in far},
        "n_genuine": n_genuine,
        "n_impostor": n_impostor,
        "fpr": fpr,
        "tpr": tpr,
        "thresholds": thresholds,
    }
