"""erc, calibrate_threshold, operating_point and all_pairs against brute force, scikit-learn and hand-computed cases."""

import itertools
import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from evaluations import UndefinedMetricWarning, all_pairs, calibrate_threshold, erc, erc_random, operating_point, pair_scores
from evaluations import pair_sets as all_pairs_module
from evaluations.erc import _curve

REJECT = tuple(np.round(np.arange(0, 0.95, 0.05), 2))


def brute_threshold(s, y, fmr):
    """Lowest candidate threshold (any score, or -inf) with impostors accepted (score > t) <= fmr * n."""
    imp = s[~y]
    if len(imp) == 0:
        return np.nan
    candidates = sorted(set(s.tolist()) | {-np.inf})
    return min(t for t in candidates if np.sum(imp > t) <= fmr * len(imp) + 1e-9)


def brute_erc(s, y, qa, qb, fmr, reject, rule):
    q = [min(a, b) for a, b in zip(qa, qb)]
    order = sorted(range(len(s)), key=lambda i: (q[i], i))  # lowest quality, then lowest index, dropped first
    t_full = brute_threshold(s, y, fmr)
    fnmr = []
    for r in reject:
        kept = np.array(order[int(np.floor(r * len(s) + 1e-9)):], dtype=int)
        ks, ky = s[kept], y[kept]
        t = t_full if rule == "fixed" else brute_threshold(ks, ky, fmr)
        gen = ks[ky]
        fnmr.append(np.mean(gen <= t) if len(gen) else np.nan)
    return np.array(fnmr)


def random_case(n, seed, ties):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.3
    scores = rng.normal(size=n) + 1.5 * same
    qa, qb = rng.random(n), rng.random(n)
    if ties:
        scores, qa, qb = np.round(scores, 1), np.round(qa, 1), np.round(qb, 1)
    return scores, same, qa, qb


@pytest.mark.parametrize("rule", ["fixed", "recomputed"])
@pytest.mark.parametrize("fmr", [0.01, 0.1, 0.37])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_erc_matches_brute_force_at_every_level(rule, fmr, ties, seed):
    s, y, qa, qb = random_case(301, seed, ties)
    r = erc(s, y, qa, qb, fmr=fmr, reject=REJECT, threshold=rule)
    np.testing.assert_allclose(r["fnmr"], brute_erc(s, y, qa, qb, fmr, REJECT, rule), atol=1e-12)
    assert r["auc"] == pytest.approx(np.trapezoid(r["fnmr"], REJECT), abs=1e-12)
    np.testing.assert_allclose(r["rejected"], [np.floor(x * 301 + 1e-9) / 301 for x in REJECT])
    assert r["n_genuine"][0] + r["n_impostor"][0] == 301
    if rule == "fixed":
        assert np.all(r["threshold"] == brute_threshold(s, y, fmr))


def test_hand_computed_small_case_both_rules():
    # q = min(qa, qb) = [3, 1, 2, 4, 0, 5]; pair 4 (an impostor, 0.95) goes first, then pair 1 (genuine, 0.3).
    s = np.array([0.9, 0.3, 0.6, 0.2, 0.95, 0.5])
    y = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    qa = np.array([3, 1, 2, 4, 0, 9])
    qb = np.array([9, 9, 9, 9, 9, 5])
    # All pairs: impostors 0.95, 0.5, 0.2; fmr 1/3 -> k = 1 -> t = 0.5; genuine 0.3 rejected: FNMR 1/3.
    # Drop 1 (r = 1/6): impostor 0.95 goes; fixed t = 0.5: FNMR 1/3; recomputed on 0.5, 0.2: k = 0 -> t = 0.5, 1/3.
    # Drop 2 (r = 2/6): genuine 0.3 goes too: FNMR 0 under both rules.
    for rule in ("fixed", "recomputed"):
        r = erc(s, y, qa, qb, fmr=1 / 3, reject=(0, 1 / 6, 2 / 6), threshold=rule)
        np.testing.assert_allclose(r["fnmr"], [1 / 3, 1 / 3, 0])
        np.testing.assert_allclose(r["threshold"], [0.5, 0.5, 0.5])
    # fmr 2/3: all pairs k = 2 -> t = 0.2, FNMR 0 (0.3 > 0.2). Recomputed after dropping 0.95:
    # impostors 0.5, 0.2, k = floor(4/3) = 1 -> t = 0.2; fixed keeps 0.2.
    r = erc(s, y, qa, qb, fmr=2 / 3, reject=(0, 1 / 6), threshold="recomputed")
    np.testing.assert_allclose(r["threshold"], [0.2, 0.2])
    np.testing.assert_allclose(r["fmr"], [2 / 3, 1 / 2])


def test_ties_in_quality_drop_the_lower_pair_index_first():
    s = np.array([0.1, 0.9, 0.0, 0.0])
    y = np.array([1, 1, 0, 0], dtype=bool)
    q = np.array([0.5, 0.5, 1.0, 1.0])
    r = erc(s, y, q, q, fmr=1.0, reject=(0, 0.25), threshold="fixed")  # t = -inf: nothing rejected by score
    assert r["n_genuine"].tolist() == [2, 1]
    r = erc(s, y, q, q, fmr=0.5, reject=(0, 0.25))  # t = 0: pair 0 (0.1) kept? it is dropped first
    assert r["fnmr"].tolist() == [0.0, 0.0]
    s2 = np.array([0.9, 0.1, 0.0, 0.0])  # the rejected genuine pair (index 0) is now the strong one
    r2 = erc(s2, y, q, q, fmr=1 / 2, reject=(0, 0.25))
    assert r2["n_genuine"].tolist() == [2, 1] and r2["fnmr"].tolist() == [0.0, 0.0]


def test_weighted_curve_equals_repeating_the_pairs():
    s, y, qa, qb = random_case(120, 3, ties=True)
    q = np.minimum(qa, qb)
    w = np.random.default_rng(5).multinomial(120, np.full(120, 1 / 120))
    rep = np.repeat(np.arange(120), w)
    r = np.array(REJECT)
    for rule in ("fixed", "recomputed"):
        a = _curve(s, y, q, w, r, 0.05, rule)
        b = _curve(s[rep], y[rep], q[rep], np.ones(len(rep), dtype=np.int64), r, 0.05, rule)
        np.testing.assert_allclose(a["fnmr"], b["fnmr"])
        np.testing.assert_allclose(a["fnmr"], brute_erc(s[rep], y[rep], q[rep], q[rep], 0.05, r, rule), atol=1e-12)


def test_bootstrap_interval_brackets_the_curve_and_is_seeded():
    s, y, qa, qb = random_case(400, 7, ties=False)
    a = erc(s, y, qa, qb, fmr=0.05, bootstrap=30, seed=1)
    b = erc(s, y, qa, qb, fmr=0.05, bootstrap=30, seed=1)
    np.testing.assert_array_equal(a["fnmr_low"], b["fnmr_low"])
    assert np.all(a["fnmr_low"] <= a["fnmr_high"]) and np.any(a["fnmr_low"] < a["fnmr_high"])
    assert a["auc_low"] <= a["auc"] <= a["auc_high"]


def degraded_pairs(n_images=400, seed=0):
    """Images with a known degradation d; a pair's score falls with the worse image's d."""
    rng = np.random.default_rng(seed)
    d = rng.random(n_images)
    a, b = rng.integers(0, n_images, size=(2, 6000))
    same = rng.random(6000) < 0.3
    worst = np.maximum(d[a], d[b])
    scores = np.where(same, 1.0 - worst, 0.0) + 0.1 * rng.normal(size=6000)
    return scores, same, -d[a], -d[b]


@pytest.mark.parametrize("rule", ["fixed", "recomputed"])
def test_oracle_quality_lies_below_random_rejection(rule):
    s, y, qa, qb = degraded_pairs()
    oracle = erc(s, y, qa, qb, fmr=0.01, threshold=rule)
    rand = erc_random(s, y, fmr=0.01, threshold=rule, repeats=5)
    assert oracle["fnmr"][0] == pytest.approx(rand["fnmr"][0])  # nothing rejected: the same set
    assert np.all(oracle["fnmr"][1:] < rand["fnmr"][1:])
    assert oracle["auc"] < 0.75 * rand["auc"]  # measured 0.62x on this case


def test_random_rejection_with_fixed_threshold_stays_flat():
    s, y, _, _ = degraded_pairs(seed=1)
    rand = erc_random(s, y, fmr=0.01, repeats=20, seed=3)
    np.testing.assert_allclose(rand["fnmr"], rand["fnmr"][0], atol=3 * rand["fnmr_std"].max() / np.sqrt(20) + 1e-3)


@pytest.mark.parametrize("fmr", [1e-3, 0.01, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("ties", [False, True])
def test_calibrate_threshold_matches_brute_force_and_sklearn_counts(fmr, ties):
    s, y, _, _ = random_case(700, 11, ties)
    t = calibrate_threshold(s, y, fmr)
    assert t == brute_threshold(s, y, fmr)
    op = operating_point(s, y, t)
    tn, fp, fn, tp = confusion_matrix(y, s > t, labels=[False, True]).ravel()
    assert op["fmr"] == fp / (fp + tn) and op["fnmr"] == fn / (fn + tp)
    assert op["fmr"] <= fmr


def test_calibrated_threshold_drifts_on_other_pairs_but_not_on_its_own():
    rng = np.random.default_rng(2)
    y = rng.random(20000) < 0.1
    s = rng.normal(size=20000) + 3 * y
    t = calibrate_threshold(s[:10000], y[:10000], 1e-2)
    own, other = operating_point(s[:10000], y[:10000], t), operating_point(s[10000:], y[10000:], t)
    assert own["fmr"] == pytest.approx(np.floor(1e-2 * (~y[:10000]).sum()) / (~y[:10000]).sum())
    assert other["fmr"] != own["fmr"] and abs(other["fmr"] - 1e-2) < 5e-3


def test_degenerate_inputs_warn_and_give_nan():
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(calibrate_threshold([0.1, 0.2], [1, 1], 0.1))
    with pytest.warns(UndefinedMetricWarning):
        assert np.isnan(operating_point([0.1, 0.2], [0, 0], 0.15)["fnmr"])
    r = erc([0.1, 0.2, 0.3], [0, 0, 1], [2, 1, 0], [2, 1, 0], fmr=0.5, reject=(0, 0.5))  # the genuine pair goes first
    assert r["fnmr"][0] == 0.0 and r["n_genuine"].tolist() == [1, 0]
    assert np.isnan(r["fnmr"][1]) and np.isnan(r["auc"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"fmr": 0.0}, "fmr=0.0"),
        ({"fmr": 2}, "fmr=2"),
        ({"reject": (0.2, 0.1)}, "reject="),
        ({"reject": (0, 1.0)}, "reject="),
        ({"threshold": "moving"}, "threshold='moving'"),
        ({"bootstrap": -1}, "bootstrap=-1"),
    ],
)
def test_bad_options_raise_one_line(kwargs, match):
    with pytest.raises(ValueError, match=match):
        erc([0.1, 0.2], [0, 1], [0, 1], [0, 1], **kwargs)


def test_bad_quality_shapes_raise():
    with pytest.raises(ValueError, match="quality_b has 1 entries but scores has 2"):
        erc([0.1, 0.2], [0, 1], [0, 1], [0])
    with pytest.raises(ValueError, match="quality_a contains NaN"):
        erc([0.1, 0.2], [0, 1], [np.nan, 1], [0, 1])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("cap", [None, 0, 25, 10**6])
def test_all_pairs_matches_brute_force(metric, cap, monkeypatch):
    monkeypatch.setattr(all_pairs_module, "_BLOCK_ELEMENTS", 7 * 23)  # several row blocks of 7 rows
    rng = np.random.default_rng(4)
    x = rng.normal(size=(23, 5)).astype(np.float32)
    lab = rng.integers(0, 4, size=23)
    r = all_pairs(x, lab, metric=metric, max_impostors=cap, seed=9)
    pairs = list(itertools.combinations(range(23), 2))
    genuine = [(i, j) for i, j in pairs if lab[i] == lab[j]]
    impostor = [(i, j) for i, j in pairs if lab[i] != lab[j]]
    got = list(zip(r["index_a"].tolist(), r["index_b"].tolist()))
    assert got == sorted(got) and len(set(got)) == len(got)
    assert [p for p in got if lab[p[0]] == lab[p[1]]] == genuine
    got_imp = [p for p in got if lab[p[0]] != lab[p[1]]]
    assert r["n_impostor_total"] == len(impostor)
    assert len(got_imp) == (len(impostor) if cap is None else min(cap, len(impostor)))
    assert set(got_imp) <= set(impostor)
    np.testing.assert_array_equal(r["same"], lab[r["index_a"]] == lab[r["index_b"]])
    ref = pair_scores(x[r["index_a"]], x[r["index_b"]], metric=metric)
    np.testing.assert_allclose(r["scores"], ref, atol=1e-4)
    again = all_pairs(x, lab, metric=metric, max_impostors=cap, seed=9)
    np.testing.assert_array_equal(again["index_b"], r["index_b"])


def test_all_pairs_sample_is_spread_over_the_rows():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    lab = np.arange(300) % 30
    r = all_pairs(x, lab, max_impostors=2000, seed=0)
    assert (~r["same"]).sum() == 2000
    first_half = np.mean(r["index_a"][~r["same"]] < 88)  # row i < 88 holds half of the pairs (i < j)
    assert 0.45 < first_half < 0.55
