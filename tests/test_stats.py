import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.metrics import roc_auc_score

from mlcompare.stats import _auc, bootstrap_auc, paired_t


def test_paired_t_matches_the_formula():
    a = np.array([0.90, 0.92, 0.91, 0.93])
    b = np.array([0.88, 0.91, 0.87, 0.90])
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    assert paired_t(a, b) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df=len(d) - 1))
    assert np.isnan(paired_t(a[:1], b[:1]))
    assert paired_t(a, a) == 1.0
    with pytest.raises(ValueError, match="as many values"):
        paired_t(a, b[:2])


def test_rank_auc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=(3, 200)), 1)  # rounding makes ties
    same = rng.random((3, 200)) < 0.5
    for row in range(3):
        assert _auc(scores[row:row + 1], same[row:row + 1])[0] == pytest.approx(roc_auc_score(same[row], scores[row]))


def test_bootstrap_separates_a_real_gap_and_not_noise():
    rng = np.random.default_rng(1)
    same = np.repeat([True, False], 500)
    signal = np.where(same, 1.0, 0.0)
    good = signal + rng.normal(0, 0.5, 1000)
    bad = signal + rng.normal(0, 1.5, 1000)
    assert bootstrap_auc(good, bad, same) < 0.01
    twin = good + rng.normal(0, 0.01, 1000)  # the same model up to tiny noise
    assert bootstrap_auc(good, twin, same) > 0.05
