"""merge_knn: per-slice knn results, shifted to global ids and merged, must equal knn on the
whole reference set (indices exactly), ties across slices included; bad input is a ValueError."""

import numpy as np
import pytest
import torch

from evaluations import knn, merge_knn
from test_eval_knn_shards import brute_force  # the same float64 stable-sort reference


def with_duplicates(metric, n_ref, n_q, rng):
    """A few base rows repeated many times (deliberate duplicates, tie groups spread over
    every slice), with scores float32 computes exactly: small integers for l2, scaled
    signed axis directions for cosine."""
    if metric == "l2":
        base = rng.integers(-2, 3, size=(6, 5)).astype(np.float32)
        r = base[rng.integers(0, 6, size=n_ref)]
    else:
        base = np.concatenate([np.eye(5), -np.eye(5)[:1]]).astype(np.float32)
        r = base[rng.integers(0, 6, size=n_ref)] * rng.integers(1, 4, size=(n_ref, 1)).astype(np.float32)
    return base[rng.integers(0, 6, size=n_q)], r


def uneven_cuts(n, n_slices, rng):
    """Slice starts of ``n_slices`` contiguous slices of random (non-empty) sizes."""
    inner = np.sort(rng.choice(np.arange(1, n), size=n_slices - 1, replace=False))
    return np.concatenate([[0], inner, [n]])


def sharded_search(q, r, k, metric, cuts):
    parts = []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        s, i = knn(q, r[start:stop], min(k, stop - start), metric=metric)
        parts.append((s, i + start))
    return parts


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("n_slices", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_merge_with_duplicates_equals_whole_search(metric, n_slices, seed):
    rng = np.random.default_rng(seed * 10 + n_slices)
    q, r = with_duplicates(metric, 90, 30, rng)
    cuts = uneven_cuts(90, n_slices, rng)
    for k in (1, 5, 17, 40):  # 40 cuts through tie groups of ~15 and exceeds small slices
        scores, idx = merge_knn(sharded_search(q, r, k, metric, cuts), k, metric=metric)
        whole_scores, whole_idx = knn(q, r, k, metric=metric)
        assert scores.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (30, k)
        np.testing.assert_array_equal(idx, whole_idx)
        np.testing.assert_allclose(scores, whole_scores, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(idx, brute_force(q, r, k, metric)[1])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_merge_random_floats_equals_whole_search(metric):
    rng = np.random.default_rng(5)
    q = rng.normal(size=(25, 16)).astype(np.float32)
    r = rng.normal(size=(203, 16)).astype(np.float32)
    cuts = np.array([0, 3, 120, 151, 203])  # a slice smaller than k
    scores, idx = merge_knn(sharded_search(q, r, 10, metric, cuts), 10, metric=metric)
    whole_scores, whole_idx = knn(q, r, 10, metric=metric)
    np.testing.assert_array_equal(idx, whole_idx)
    np.testing.assert_allclose(scores, whole_scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_leave_one_out_recipe(metric):
    # The docstring's recipe: k + 1 per slice, merge k + 1, drop the query's own row.
    rng = np.random.default_rng(6)
    _, x = with_duplicates(metric, 60, 1, rng)
    k = 7
    scores, idx = merge_knn(sharded_search(x, x, k + 1, metric, np.array([0, 13, 41, 60])), k + 1, metric=metric)
    order = np.argsort(idx == np.arange(60)[:, None], axis=1, kind="stable")[:, :k]
    want_scores, want_idx = knn(x, x, k, metric=metric, exclude_self=True)
    np.testing.assert_array_equal(np.take_along_axis(idx, order, axis=1), want_idx)
    np.testing.assert_allclose(np.take_along_axis(scores, order, axis=1), want_scores, rtol=0, atol=1e-6)


def test_hand_computed_order_and_torch_parts():
    a = (torch.tensor([[4.0, 1.0, 0.5]]), torch.tensor([[7, 2, 5]]))  # wider than k is fine
    b = (np.array([[1.0, 0.5]], dtype=np.float64), np.array([[1, 9]], dtype=np.int32))
    s, i = merge_knn([a, b], 4, metric="cosine")  # higher first, ties by lower index
    assert i.tolist() == [[7, 1, 2, 5]] and s.tolist() == [[4.0, 1.0, 1.0, 0.5]]
    s, i = merge_knn([a, b], 4, metric="l2")  # lower first, ties by lower index
    assert i.tolist() == [[5, 9, 1, 2]] and s.tolist() == [[0.5, 0.5, 1.0, 1.0]]


def test_zero_queries():
    s, i = merge_knn([(np.zeros((0, 2)), np.zeros((0, 2), dtype=np.int64))], 2)
    assert s.shape == (0, 2) and i.shape == (0, 2)


ONE = (np.array([[0.5, 0.25]]), np.array([[0, 1]]))


@pytest.mark.parametrize(
    "parts, k, kwargs, message",
    [
        ([ONE, (np.array([[0.5], [0.1]]), np.array([[2], [3]]))], 2, {}, r"^parts\[1\] has 2 query rows but parts\[0\] has 1; "),
        ([ONE, (np.array([[0.5]]), np.array([[2]]))], 4, {}, r"^k=4 is larger than the 3 candidates per query in parts \(widths \[2, 1\]\); use k <= 3$"),
        ([ONE], 0, {}, r"^k=0 must be a positive integer$"),
        ([ONE], True, {}, r"^k=True must be a positive integer$"),
        ([], 1, {}, r"^parts is empty; it needs at least one \(scores, indices\) pair$"),
        (ONE, 1, {}, r"^parts\[0\] must be a \(scores, indices\) pair; got ndarray$"),  # a pair, not a list of pairs
        ("ab", 1, {}, r"^parts must be a list of \(scores, indices\) pairs; got str$"),
        ([ONE[0]], 1, {}, r"^parts\[0\] must be a \(scores, indices\) pair; got ndarray$"),
        ([(np.array([0.5, 0.2]), np.array([0, 1]))], 1, {}, r"^parts\[0\] scores must be a 2-D array \[Q, k_i\]; got shape \(2,\)$"),
        ([(np.array([[0.5, 0.2]]), np.array([[0, 1, 2]]))], 1, {}, r"^parts\[0\] has scores of shape \(1, 2\) but indices of shape \(1, 3\)"),
        ([(np.array([[0.5, 0.2]]), np.array([[0.0, 1.0]]))], 1, {}, r"^parts\[0\] indices must be integers; got dtype float64$"),
        ([(np.array([[0.5, np.nan]]), np.array([[0, 1]]))], 1, {}, r"^parts\[0\] scores contain NaN or inf \(first at row 0\)$"),
        ([(np.array([[0.5, 0.2]]), np.array([[0, -1]]))], 1, {}, r"^parts\[0\] holds a negative index \(-1\); "),
        ([ONE, ONE], 2, {}, r"^reference index 0 appears twice in row 0 of parts; shift each part's indices"),
        ([ONE], 1, {"metric": "ip"}, r"^metric='ip' is not supported"),
    ],
)
def test_bad_input_is_one_line_value_error(parts, k, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        merge_knn(parts, k, **kwargs)
    assert "\n" not in str(info.value)


def test_unshifted_slices_are_caught():
    rng = np.random.default_rng(7)
    q, r = rng.normal(size=(4, 3)), rng.normal(size=(20, 3))
    parts = [knn(q, r[:10], 6), knn(q, r[10:], 6)]  # local ids in 0..9 (6 of 10: overlap): forgot "+ start"
    with pytest.raises(ValueError, match="appears twice"):
        merge_knn(parts, 6)
