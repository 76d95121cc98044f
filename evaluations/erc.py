"""Error-versus-reject curves: does rejecting the lowest-quality pairs remove the errors?

Accept iff ``score > threshold`` (as :mod:`evaluations.calibration`). Quality is "higher =
better" (a feature norm, or minus a known degradation); a pair's quality is the lower of
its two images'.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evaluations import _inputs
from evaluations.calibration import check_fmr, weighted_threshold

THRESHOLD_RULES = ("fixed", "recomputed")
DEFAULT_REJECT = tuple(round(0.05 * i, 2) for i in range(11))  # 0, 0.05, ..., 0.5


def _check_quality(q: Any, name: str, n: int) -> np.ndarray:
    a = _inputs.vector(q, name)
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries but scores has {n}; they must match (one quality per pair)")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must hold numbers; got dtype {a.dtype}")
    a = a.astype(np.float64)
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN (first at index {int(np.flatnonzero(np.isnan(a))[0])}); give every image a quality")
    return a


def _check_reject(reject: Any) -> np.ndarray:
    r = np.asarray(reject, dtype=np.float64).reshape(-1)
    if r.shape[0] == 0 or not ((r >= 0) & (r < 1)).all() or (np.diff(r) <= 0).any():
        raise ValueError(f"reject={[float(v) for v in np.asarray(reject, dtype=float).reshape(-1)]} must be increasing fractions in [0, 1), e.g. (0, 0.05, ..., 0.5)")
    return r


def _curve(s: np.ndarray, y: np.ndarray, q: np.ndarray, w: np.ndarray, reject: np.ndarray, fmr: float, rule: str) -> dict:
    """The ERC with pair i counted w[i] times (w = 1 for the curve itself, multinomial
    counts for a bootstrap resample: the same as repeating the pairs, see the tests)."""
    order = np.argsort(q, kind="stable")  # lowest quality first; ties: lower pair index first
    s, y, w = s[order], y[order], w[order]
    cum = np.cumsum(w)
    total = int(cum[-1])
    by_score = np.argsort(-s, kind="stable")
    imp_by_score = by_score[~y[by_score]]
    s_imp_desc = s[imp_by_score]
    full_threshold = weighted_threshold(s_imp_desc, w[imp_by_score], fmr)
    n_levels = reject.shape[0]
    out = {k: np.empty(n_levels) for k in ("fnmr", "fmr", "threshold", "rejected")}
    out["n_genuine"] = np.empty(n_levels, dtype=np.int64)
    out["n_impostor"] = np.empty(n_levels, dtype=np.int64)
    for i, r in enumerate(reject):
        n_drop = int(np.floor(r * total * (1.0 + 1e-12)))
        kept = np.clip(cum - n_drop, 0, w)  # the units of the lowest-quality pairs go first
        t = full_threshold if rule == "fixed" else weighted_threshold(s_imp_desc, kept[imp_by_score], fmr)
        n_gen, n_imp = int(kept[y].sum()), int(kept[~y].sum())
        accept = s > t
        out["fnmr"][i] = kept[y & ~accept].sum() / n_gen if n_gen else np.nan
        out["fmr"][i] = kept[~y & accept].sum() / n_imp if n_imp else np.nan
        out["threshold"][i] = t
        out["rejected"][i] = n_drop / total
        out["n_genuine"][i], out["n_impostor"][i] = n_gen, n_imp
    fnmr = out["fnmr"]
    out["auc"] = float(np.trapezoid(fnmr, reject)) if n_levels > 1 and not np.isnan(fnmr).any() else float("nan")
    return out


def erc(
    scores: Any,
    same: Any,
    quality_a: Any,
    quality_b: Any,
    *,
    fmr: float = 1e-3,
    reject: Sequence[float] = DEFAULT_REJECT,
    threshold: str = "fixed",
    bootstrap: int = 0,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Error-versus-reject curve: FNMR after rejecting the lowest-quality pairs.

    Pair quality :math:`q_i = \\min(q^a_i, q^b_i)`. At rejection fraction r the
    :math:`\\lfloor r P \\rfloor` pairs of lowest q (genuine and impostor together) are
    dropped; ties in q are broken by pair index, the lower index dropped first. The FNMR
    is counted on the genuine pairs kept, at a threshold chosen at ``fmr``
    (:func:`evaluations.calibrate_threshold`):

    - ``threshold="fixed"``: once, on all P pairs (ISO/IEC 29794-1: the system's
      operating point does not move when quality screening is switched on);
    - ``threshold="recomputed"``: again at each level on the impostors kept (as
      MagFace's evaluation code does; FMR stays at the target, FNMR moves).

    A quality that measures what makes recognition fail gives an FNMR that falls as r
    grows; random rejection keeps it flat in expectation (:func:`erc_random`).

    Args:
        scores: [P] pair scores, higher = more alike.
        same: [P] bool, True for genuine pairs.
        quality_a, quality_b: [P] quality of each pair's two images, higher = better.
        fmr: target false match rate in (0, 1]. Meaningful only with many more than
            1 / fmr impostors: use :func:`all_pairs` for low FMRs.
        reject: increasing rejection fractions in [0, 1).
        threshold: ``"fixed"`` or ``"recomputed"``.
        bootstrap: resamples of the P pairs (with replacement) for percentile intervals;
            0 for none. Pairs that share an image are resampled independently, so
            the interval is narrower than an identity-level one would be.
        confidence: coverage of the bootstrap intervals.
        seed: of the bootstrap.

    Returns:
        dict with float64 arrays [len(reject)]: ``reject``, ``rejected`` (fraction of
        pairs actually dropped, floor(r P) / P), ``fnmr``, ``fmr`` (achieved on the kept
        impostors), ``threshold``; int arrays ``n_genuine``, ``n_impostor`` (kept);
        ``auc`` (AUC-ERC: trapezoid area under fnmr over ``reject``; lower is better),
        and with ``bootstrap`` > 0 ``fnmr_low``, ``fnmr_high``, ``auc_low``,
        ``auc_high``. FNMR is NaN where no genuine pair is kept (then ``auc`` is NaN).

    >>> r = erc([0.9, 0.05, 0.8, 0.1], [1, 1, 0, 0], [1, 0, 1, 1], [1, 1, 1, 1], fmr=0.5, reject=(0, 0.25))
    >>> r["fnmr"].tolist(), r["threshold"].tolist(), r["auc"]
    ([0.5, 0.0], [0.1, 0.1], 0.0625)
    """
    s, y = _inputs.scores_and_same(scores, same)
    q = np.minimum(_check_quality(quality_a, "quality_a", s.shape[0]), _check_quality(quality_b, "quality_b", s.shape[0]))
    fmr = check_fmr(fmr)
    r = _check_reject(reject)
    if threshold not in THRESHOLD_RULES:
        raise ValueError(f"threshold={threshold!r} is not a rule; use one of {list(THRESHOLD_RULES)}")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, (int, np.integer)) or bootstrap < 0:
        raise ValueError(f"bootstrap={bootstrap!r} must be a number of resamples >= 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence={confidence!r} must be in (0, 1)")
    out = _curve(s, y, q, np.ones(s.shape[0], dtype=np.int64), r, fmr, threshold)
    out["reject"] = r
    if bootstrap:
        rng = np.random.default_rng(seed)
        curves, aucs = np.empty((bootstrap, r.shape[0])), np.empty(bootstrap)
        for b in range(bootstrap):
            w = rng.multinomial(s.shape[0], np.full(s.shape[0], 1.0 / s.shape[0]))
            c = _curve(s, y, q, w, r, fmr, threshold)
            curves[b], aucs[b] = c["fnmr"], c["auc"]
        lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
        out["fnmr_low"], out["fnmr_high"] = np.nanpercentile(curves, lo, axis=0), np.nanpercentile(curves, hi, axis=0)
        out["auc_low"], out["auc_high"] = float(np.nanpercentile(aucs, lo)), float(np.nanpercentile(aucs, hi))
    return out


def erc_random(
    scores: Any,
    same: Any,
    *,
    fmr: float = 1e-3,
    reject: Sequence[float] = DEFAULT_REJECT,
    threshold: str = "fixed",
    repeats: int = 10,
    seed: int = 0,
) -> dict:
    """Baseline: the ERC of random rejection, averaged over ``repeats`` random pair orders.

    Each repeat gives every pair an independent uniform quality (seeded) and calls
    :func:`erc`. Expected flat at the full set's FNMR (exactly so for ``"fixed"``).

    Returns:
        dict with ``reject``, ``fnmr`` (mean over repeats), ``fnmr_std`` and ``auc``
        (of the mean curve).
    """
    s, y = _inputs.scores_and_same(scores, same)
    if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be a number of random orders >= 1")
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(repeats):
        q = rng.random(s.shape[0])
        curves.append(erc(s, y, q, q, fmr=fmr, reject=reject, threshold=threshold)["fnmr"])
    r = _check_reject(reject)
    mean = np.mean(curves, axis=0)
    return {"reject": r, "fnmr": mean, "fnmr_std": np.std(curves, axis=0),
            "auc": float(np.trapezoid(mean, r)) if r.shape[0] > 1 else float("nan")}
