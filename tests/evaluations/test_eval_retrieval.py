"""retrieval against pytorch-metric-learning's AccuracyCalculator and hand-computed Recall@K."""

import logging

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from evaluations import UndefinedMetricWarning, retrieval

logging.getLogger("PML").setLevel(logging.ERROR)


def pml(x, y, k=None):
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k=k, device=torch.device("cpu"))
    return calc.get_accuracy(torch.tensor(x), torch.tensor(y))


def labelled(kind, seed):
    rng = np.random.default_rng(seed)
    # Class sizes 1, 2 and larger, so that lone queries and R = 1 are both exercised.
    sizes = np.r_[np.ones(6, int), np.full(8, 2), rng.integers(3, 15, size=12)]
    y = np.repeat(np.arange(len(sizes)), sizes)
    if kind == "random":
        x = rng.normal(size=(len(y), 12))
    else:
        centres = rng.normal(size=(len(sizes), 12))
        x = centres[y] + 0.6 * rng.normal(size=(len(y), 12))
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm]


@pytest.mark.parametrize("kind", ["random", "clustered"])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_accuracy_calculator_l2(kind, seed):
    x, y = labelled(kind, seed)
    ours = retrieval(x, y, metric="l2", nmi=False)
    ref = pml(x, y)
    assert ours["precision_at_1"] == pytest.approx(ref["precision_at_1"], abs=1e-9)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-9)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-9)
    assert ours["n_queries"] == int(np.sum(np.bincount(y)[y] > 1))


def test_cosine_equals_accuracy_calculator_on_normalised_embeddings():
    x, y = labelled("clustered", 2)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    ours = retrieval(x, y, nmi=False)
    ref = pml(x, y)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-9)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-9)


def test_truncated_k_matches_accuracy_calculator_int_k():
    x, y = labelled("clustered", 3)
    with pytest.warns(UserWarning, match="k=3"):
        ours = retrieval(x, y, k=3, metric="l2", nmi=False, recall_at=(1,))
    ref = pml(x, y, k=3)
    assert ours["r_precision"] == pytest.approx(ref["r_precision"], abs=1e-9)
    assert ours["map_at_r"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-9)


def test_recall_at_k_is_any_hit_and_map_at_r_by_hand():
    # 1-D points; labels a a a b b. Leave-one-out neighbours (l2):
    # 0.0(a): 0.1(b) 0.3(a) 0.35(b) 1.0(a) | 0.1(b): 0.0 0.3 0.35 1.0
    x = np.array([[0.0], [0.3], [1.0], [0.1], [0.35]], dtype=np.float32)
    y = np.array(["a", "a", "a", "b", "b"])
    r = retrieval(x, y, metric="l2", recall_at=(1, 2, 4), nmi=False)
    # neighbours: q0: 3 1 4 2 -> b a b a ; q1: 4 3 0 2 -> b b a a ; q2: 4 1 3 0 -> b a b a
    #             q3: 0 1 4 2 -> a a b a ; q4: 1 3 0 2 -> a b a a
    # P@1: none of the 5 nearest neighbours share the label -> 0.
    assert r["precision_at_1"] == 0.0
    # Recall@2 (any hit in the first 2): q0 yes, q1 no, q2 yes, q3 no, q4 yes -> 3/5.
    assert r["recall_at"] == {1: 0.0, 2: pytest.approx(0.6), 4: 1.0}
    # R = 2 for a, 1 for b. MAP@R: q0 (0 + 1/2)/2, q1 0, q2 (0 + 1/2)/2, q3 0, q4 0 (its
    # single relevant slot holds an a).
    assert r["map_at_r"] == pytest.approx((0.25 + 0 + 0.25 + 0 + 0) / 5)
    assert r["r_precision"] == pytest.approx((0.5 + 0 + 0.5 + 0 + 0) / 5)


def test_nmi_perfect_on_separated_clusters():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 20)
    x = np.eye(8)[y] * 10 + 0.01 * rng.normal(size=(80, 8))
    r = retrieval(x, y)
    assert r["nmi"] == pytest.approx(1.0)
    assert r["precision_at_1"] == 1.0 and r["map_at_r"] == 1.0


def test_all_singletons_warn_nan():
    with pytest.warns(UndefinedMetricWarning, match="single member"):
        r = retrieval(np.eye(4), [0, 1, 2, 3], nmi=False, recall_at=(1,))
    assert np.isnan(r["map_at_r"]) and r["n_queries"] == 0
