"""pair_scores against a direct computation."""

import numpy as np
import pytest
import torch

from evaluations import pair_scores


def test_cosine_and_negative_squared_l2():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(40, 6)), rng.normal(size=(40, 6))
    cos = [x @ y / np.linalg.norm(x) / np.linalg.norm(y) for x, y in zip(a, b)]
    np.testing.assert_allclose(pair_scores(a, b), cos, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pair_scores(torch.tensor(a), torch.tensor(b), metric="l2"), -((a - b) ** 2).sum(1), rtol=1e-5)
    assert pair_scores(a, b).dtype == np.float32


def test_shape_mismatch_and_bad_metric():
    with pytest.raises(ValueError, match="^a has shape"):
        pair_scores(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="metric='dot'"):
        pair_scores(np.ones((3, 2)), np.ones((3, 2)), metric="dot")
