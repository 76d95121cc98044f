"""verification against scikit-learn (ROC, AUC), a brute-force 10-fold accuracy and hand-computed EER/TAR."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from evaluations import UndefinedMetricWarning, verification
from evaluations.verification import kfold_accuracy


def random_pairs(n, seed, ties=False):
    rng = np.random.default_rng(seed)
    same = rng.random(n) < 0.4
    scores = rng.normal(size=n) + 1.2 * same
    if ties:
        scores = np.round(scores, 1)
    return scores, same


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_roc_and_auc_match_sklearn(ties, seed):
    scores, same = random_pairs(500, seed, ties)
    r = verification(scores, same)
    fpr, tpr, thr = roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(r["fpr"], fpr)
    np.testing.assert_allclose(r["tpr"], tpr)
    np.testing.assert_array_equal(r["thresholds"][1:], thr[1:])
    assert np.isinf(r["thresholds"][0])
    assert r["auc"] == pytest.approx(roc_auc_score(same, scores), abs=1e-12)
    assert r["n_genuine"] == same.sum() and r["n_impostor"] == (~same).sum()


def brute_force_kfold(scores, same, folds):
    """Try every threshold (accept iff score > t) from high to low on the training folds."""
    n = len(scores)
    accs = []
    for test in np.array_split(np.arange(n), folds):
        train = np.setdiff1d(np.arange(n), test)
        u = np.unique(scores[train])[::-1]
        candidates = [np.inf] + [(a + b) / 2 for a, b in zip(u[:-1], u[1:])] + [-np.inf]
        best_t, best_acc = None, -1.0
        for t in candidates:
            acc = np.mean((scores[train] > t) == same[train])
            if acc > best_acc:
                best_t, best_acc = t, acc
        accs.append(np.mean((scores[test] > best_t) == same[test]))
    return np.mean(accs), np.std(accs)


@pytest.mark.parametrize("n,folds,ties", [(300, 10, False), (203, 10, True), (60, 3, True)])
def test_kfold_accuracy_matches_brute_force(n, folds, ties):
    scores, same = random_pairs(n, 3, ties)
    mean, std, per_fold = kfold_accuracy(scores, same, folds=folds)
    ref_mean, ref_std = brute_force_kfold(scores, same, folds)
    assert mean == pytest.approx(ref_mean, abs=1e-12)
    assert std == pytest.approx(ref_std, abs=1e-12)
    assert per_fold.shape == (folds,)
    r = verification(scores, same, folds=folds)
    assert r["accuracy"] == pytest.approx(ref_mean, abs=1e-12)


def test_folds_are_contiguous_blocks_in_the_given_order():
    # Fold 1 holds only genuine pairs scoring high, fold 2 only impostors scoring high:
    # a shuffled split would give a different answer.
    scores = np.array([0.9, 0.8, 0.9, 0.8])
    same = np.array([True, True, False, False])
    mean, _, per_fold = kfold_accuracy(scores, same, folds=2)
    assert per_fold.tolist() == [0.0, 0.0]


def test_eer_and_tar_hand_computed():
    # genuine 0.9 0.8 0.4, impostor 0.7 0.3 0.2. ROC points (fpr, tpr):
    # (0,0) (0,1/3) (0,2/3) (1/3,2/3) (1/3,1) (2/3,1) (1,1). FNR = 1 - TPR equals FPR
    # at (1/3, 2/3): EER = 1/3. AUC = 1 - (1/3)(1/3) = 8/9.
    r = verification([0.9, 0.8, 0.4, 0.7, 0.3, 0.2], [1, 1, 1, 0, 0, 0], folds=3, far=(1 / 3, 0.5, 0.2, 1.0))
    assert r["eer"] == pytest.approx(1 / 3)
    assert r["auc"] == pytest.approx(8 / 9)
    assert r["tar_at_far"][1 / 3] == pytest.approx(1.0)  # top of the vertical step
    assert r["tar_at_far"][0.5] == pytest.approx(1.0)
    assert r["tar_at_far"][0.2] is None  # 0.2 < 1/3 impostors: not measurable
    assert r["tar_at_far"][1.0] == pytest.approx(1.0)


def test_eer_interpolates_between_roc_points():
    # genuine 0.9 0.5, impostor 0.5 0.1: the tie at 0.5 makes a diagonal ROC segment
    # (0, .5) -> (.5, 1) on which FPR = 1 - TPR at FPR = .25.
    r = verification([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0], folds=2)
    assert r["eer"] == pytest.approx(0.25)
    # genuine .9 .6 .3, impostors .8 .2 .1 .0: ROC (0,1/3) (1/4,1/3) (1/4,2/3) (1/4,1) ...;
    # FPR - FNR goes from -1/12 to +1/4 on the vertical step at FPR = 1/4: EER = 1/4.
    r = verification([0.9, 0.6, 0.3, 0.8, 0.2, 0.1, 0.0], [1, 1, 1, 0, 0, 0, 0], folds=2)
    assert r["eer"] == pytest.approx(0.25)


def test_tar_interpolated_on_roc():
    # 4 impostors: 0.8 0.6 0.4 0.2; genuine 0.9 0.7 0.5 0.3 -> ROC staircase;
    # envelope points (0, .25) (.25, .5) (.5, .75) (.75, 1): TAR@FAR .375 = .625.
    r = verification([0.9, 0.7, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2], [1, 1, 1, 1, 0, 0, 0, 0], folds=2, far=(0.375, 0.25))
    assert r["tar_at_far"][0.375] == pytest.approx(0.625)
    assert r["tar_at_far"][0.25] == pytest.approx(0.5)


def test_no_impostors_warns_and_gives_nan():
    with pytest.warns(UndefinedMetricWarning, match="no impostor"):
        r = verification([0.1, 0.5, 0.7, 0.9], [True] * 4, folds=2)
    assert np.isnan(r["auc"]) and np.isnan(r["eer"])
    assert all(v is None for v in r["tar_at_far"].values())
    assert r["n_impostor"] == 0 and r["accuracy"] == 1.0


def test_no_genuine_warns_and_gives_nan():
    with pytest.warns(UndefinedMetricWarning, match="no genuine"):
        r = verification([0.1, 0.5, 0.7, 0.9], [False] * 4, folds=2, far=(0.5,))
    assert np.isnan(r["auc"]) and np.isnan(r["eer"]) and np.isnan(r["tar_at_far"][0.5])


def test_result_serialises_as_plain_types():
    scores, same = random_pairs(100, 0)
    r = verification(scores, same)
    assert set(r) == {"accuracy", "accuracy_std", "auc", "eer", "tar_at_far", "n_genuine", "n_impostor", "fpr", "tpr", "thresholds"}
    for key in ("accuracy", "accuracy_std", "auc", "eer"):
        assert type(r[key]) is float
    assert type(r["n_genuine"]) is int and type(r["n_impostor"]) is int
