"""Bad input: one-line ValueErrors that name the argument."""

import numpy as np
import pytest
import torch

from evaluations import identification, knn, pair_scores, retrieval, verification

X = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
Y = np.arange(10) % 3


def with_nan():
    x = X.copy()
    x[3, 1] = np.nan
    return x


def with_inf():
    x = X.copy()
    x[5, 0] = np.inf
    return x


CASES = [
    ("nan queries", lambda: knn(with_nan(), X, 2), "queries contains NaN or inf (first at row 3)"),
    ("inf references", lambda: knn(X, with_inf(), 2), "references contains NaN or inf (first at row 5)"),
    ("1-D queries", lambda: knn(X[0], X, 2), "queries must be a 2-D array"),
    ("dims differ", lambda: knn(X[:, :3], X, 2), "queries have 3 dimensions but references have 4"),
    ("bad metric", lambda: knn(X, X, 2, metric="dot"), "metric='dot' is not supported"),
    ("pair shapes", lambda: pair_scores(X, X[:5]), "a has shape (10, 4) but b has shape (5, 4)"),
    ("nan pair", lambda: pair_scores(with_nan(), X), "a contains NaN or inf"),
    ("scores/same lengths", lambda: verification(np.zeros(10), np.ones(9, bool)), "same has 9 entries but scores has 10"),
    ("nan scores", lambda: verification(np.r_[np.zeros(9), np.nan], np.ones(10, bool)), "scores contains NaN or inf"),
    ("same not bool", lambda: verification(np.zeros(4), [0, 1, 2, 1], folds=2), "same must hold booleans"),
    ("2-D scores", lambda: verification(np.zeros((4, 2)), np.ones(4, bool)), "scores must be a 1-D array"),
    ("folds", lambda: verification(np.zeros(4), np.ones(4, bool), folds=5), "folds=5 must be an integer in [2"),
    ("far", lambda: verification(np.zeros(4), np.ones(4, bool), folds=2, far=(0.0,)), "far contains 0.0"),
    ("empty gallery", lambda: identification(np.zeros((0, 4)), [], X, Y), "gallery is empty"),
    ("gallery labels length", lambda: identification(X, Y[:9], X, Y), "gallery_labels has 9 labels but gallery has 10 rows"),
    ("probe labels 2-D", lambda: identification(X, Y, X, Y[:, None]), "probe_labels must be a 1-D array of length 10"),
    ("nan probes", lambda: identification(X, Y, with_nan(), Y), "probes contains NaN or inf"),
    ("inf gallery torch", lambda: identification(torch.tensor(with_inf()), Y, X, Y), "gallery contains NaN or inf"),
    ("ranks", lambda: identification(X, Y, X, Y, ranks=(0,)), "ranks contains 0"),
    ("fpir", lambda: identification(X, Y, X, Y, fpir=(2.0,)), "fpir contains 2.0"),
    ("retrieval labels length", lambda: retrieval(X, Y[:4]), "labels has 4 labels but embeddings has 10 rows"),
    ("retrieval labels 2-D", lambda: retrieval(X, np.stack([Y, Y], 1)), "labels must be a 1-D array"),
    ("retrieval nan", lambda: retrieval(with_nan(), Y), "embeddings contains NaN or inf"),
    ("retrieval empty", lambda: retrieval(np.zeros((0, 4)), []), "embeddings is empty"),
    ("recall_at", lambda: retrieval(X, Y, recall_at=(10,)), "recall_at contains 10"),
]


@pytest.mark.parametrize("name,call,message", CASES, ids=[c[0] for c in CASES])
def test_one_line_value_error_naming_the_argument(name, call, message):
    with pytest.raises(ValueError) as info:
        call()
    text = str(info.value)
    assert message in text
    assert "\n" not in text
