import numpy as np
import pytest
from scipy import stats as scipy_stats

from mlcompare.run.stats import ALPHA, half_width, holm, paired_difference, paired_t, versus_best


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


@pytest.mark.parametrize("n", [2, 3, 5])
def test_paired_difference_is_scipys_paired_t_interval(n):
    rng = np.random.default_rng(n)
    a, b = rng.normal(0.9, 0.01, n), rng.normal(0.89, 0.01, n)
    d = paired_difference(a, b)
    ref = scipy_stats.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert (d.mean, d.low, d.high, d.p, d.n) == pytest.approx((np.mean(a - b), ci.low, ci.high, ref.pvalue, n))
    assert half_width(float(np.std(a - b, ddof=1)), n) == pytest.approx((ci.high - ci.low) / 2)
    assert half_width(0.01, 1) != half_width(0.01, 1)  # NaN: no interval from one value


def test_paired_difference_of_one_seed_has_no_interval_and_no_test():
    d = paired_difference(np.array([0.9]), np.array([0.85]))
    assert d.mean == pytest.approx(0.05) and d.n == 1
    assert np.isnan(d.low) and np.isnan(d.high) and np.isnan(d.p) and not d.significant


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    out = holm([0.01, np.nan, 0.02])  # an untested comparison does not count in m
    assert out[[0, 2]] == pytest.approx([0.02, 0.02]) and np.isnan(out[1])


def test_holm_rejects_exactly_what_the_step_down_procedure_rejects():
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.uniform(0, 0.08, rng.integers(1, 8))
        order = np.argsort(p)
        rejected = np.zeros(len(p), dtype=bool)
        for k, i in enumerate(order):  # reject p_(k) while p_(k) <= alpha / (m - k); stop at the first that fails
            if p[i] > ALPHA / (len(p) - k):
                break
            rejected[i] = True
        assert np.array_equal(holm(p) <= ALPHA, rejected)
        assert np.all(holm(p) >= p)


def test_versus_best_pairs_seeds_and_corrects_over_all_comparisons():
    best = {0: 0.95, 1: 0.96, 2: 0.94, 3: 0.955}
    close = {0: 0.949, 1: 0.962, 2: 0.935, 3: 0.953}
    far = {0: 0.90, 1: 0.915, 2: 0.893, 3: 0.905}
    partial = {1: 0.93, 3: 0.935, 7: 0.99}  # seed 7 has no partner: not compared
    got = versus_best({"best": best, "close": close, "far": far, "partial": partial}, "best")
    assert set(got) == {"close", "far", "partial"}
    raw = [scipy_stats.ttest_rel([m[s] for s in sorted(set(m) & set(best))], [best[s] for s in sorted(set(m) & set(best))]).pvalue
           for m in (close, far, partial)]
    expected = holm(raw)
    for name, q in zip(("close", "far", "partial"), expected):
        assert got[name].p_holm == pytest.approx(q)
    assert got["partial"].n == 2 and got["partial"].mean == pytest.approx(np.mean([0.93 - 0.96, 0.935 - 0.955]))
    assert got["far"].significant and not got["close"].significant
