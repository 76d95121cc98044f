"""QMagFace's quality-aware score and its fit, against the paper's formula and brute force."""
import numpy as np
import pytest

import evaluations
from evaluations.quality_score import fit_qmagface, qmagface_scores


def _pairs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Impostors centred at 0 whatever their quality; genuine pairs whose score falls with quality,
    the case QMagFace is built for (a low-quality genuine pair looks like an impostor)."""
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.2
    q = rng.uniform(5.0, 30.0, n)
    s = np.where(same, 0.1 + 0.6 * (q - 5.0) / 25.0 + rng.normal(0, 0.08, n), rng.normal(0.0, 0.1, n))
    return s, same, q


def _fnmr_at(s: np.ndarray, same: np.ndarray, fmr: float) -> float:
    return evaluations.operating_point(s, same, evaluations.calibrate_threshold(s, same, fmr))["fnmr"]


def test_score_is_the_papers_formula_by_hand():
    # omega = min(0, 2 s - 1): s = 0.8 -> 0 (unchanged); s = 0.2 -> -0.6, q = min(3, 5) = 3 -> 0.2 - 1.8
    out = qmagface_scores([0.8, 0.2, 0.5], [3.0, 3.0, 1.0], [5.0, 4.0, 9.0], alpha=1.0, beta=2.0)
    np.testing.assert_allclose(out, [0.8, 0.2 - 0.6 * 3.0, 0.5])


def test_fit_picks_the_brute_force_best_weight_at_each_fmr():
    s, same, q = _pairs(4000, seed=1)
    fmrs = [1e-2, 3e-2, 1e-1]
    fit = fit_qmagface(s, same, q, q, fmrs=fmrs, weights=9)
    omegas = np.linspace(-0.5 / q.max(), 0.5 / q.max(), 9)
    for j, fmr in enumerate(fmrs):
        fnmrs = [_fnmr_at(s + w * q, same, fmr) for w in omegas]
        best = int(np.argmin(fnmrs))  # first of the minima, as the fit
        assert fit["omegas"][j] == pytest.approx(omegas[best])
        assert fit["thresholds"][j] == pytest.approx(evaluations.calibrate_threshold(s + omegas[best] * q, same, fmr))
    slope, intercept = np.polyfit(fit["thresholds"], fit["omegas"], 1)
    assert (fit["beta"], fit["alpha"]) == pytest.approx((slope, -intercept))


def test_fitted_correction_lowers_fnmr_on_held_out_pairs():
    s, same, q = _pairs(20000, seed=2)
    fit = fit_qmagface(s, same, q, q)
    s2, same2, q2 = _pairs(20000, seed=3)
    corrected = qmagface_scores(s2, q2, q2, alpha=fit["alpha"], beta=fit["beta"])
    assert fit["beta"] != 0.0
    # at FMR 1e-2 the best constant weight is clearly negative here (at 1e-3 it is about 0)
    plain, quality_aware = _fnmr_at(s2, same2, 1e-2), _fnmr_at(corrected, same2, 1e-2)
    assert quality_aware < plain - 0.01, (plain, quality_aware)


def test_bad_input_is_one_line():
    with pytest.raises(ValueError, match="at least 10 impostors"):
        fit_qmagface([0.9, 0.1], [True, False], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="> 0"):
        fit_qmagface(np.zeros(20), np.arange(20) < 5, -np.ones(20), np.ones(20))
    with pytest.raises(ValueError, match="finite"):
        qmagface_scores([0.5], [1.0], [1.0], alpha=float("nan"), beta=1.0)
