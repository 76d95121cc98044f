"""knn against a brute-force torch search (stable sort), including ties and bad k."""

import numpy as np
import pytest
import torch

from evaluations import knn


def brute_force(q, r, k, metric, exclude_self=False):
    q64, r64 = torch.as_tensor(q, dtype=torch.float64), torch.as_tensor(r, dtype=torch.float64)
    if metric == "cosine":
        q64 = torch.nn.functional.normalize(q64, dim=1)
        r64 = torch.nn.functional.normalize(r64, dim=1)
        key = -(q64 @ r64.T)
    else:
        key = torch.cdist(q64, r64) ** 2
    if exclude_self:
        key.fill_diagonal_(float("inf"))
    key, idx = torch.sort(key, dim=1, stable=True)  # stable: ties by lower index
    scores = -key if metric == "cosine" else key
    return scores[:, :k].numpy(), idx[:, :k].numpy()


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("n_q", [5, 60])  # faiss switches to its BLAS path at 20 queries
def test_random_matches_brute_force(metric, n_q):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(n_q, 16)).astype(np.float32)
    r = rng.normal(size=(300, 16)).astype(np.float32)
    scores, idx = knn(q, r, 7, metric=metric, query_chunk=13)
    ref_scores, ref_idx = brute_force(q, r, 7, metric)
    assert scores.dtype == np.float32 and idx.dtype == np.int64 and idx.shape == (n_q, 7)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("n_q", [6, 40])
def test_ties_broken_by_lower_reference_index(metric, n_q):
    rng = np.random.default_rng(1)
    # Exact ties need scores that float32 BLAS computes exactly wherever the row
    # sits: integer vectors for l2, signed axis directions for cosine (scores in
    # {-1, 0, 1}; differently scaled copies of one axis tie too).
    if metric == "l2":
        base = rng.integers(-3, 4, size=(5, 4)).astype(np.float32)
        r = base[rng.integers(0, 5, size=80)]
    else:
        base = np.concatenate([np.eye(4), -np.eye(4)[:1]]).astype(np.float32)
        r = base[rng.integers(0, 5, size=80)] * rng.integers(1, 4, size=(80, 1)).astype(np.float32)
    q = base[rng.integers(0, 5, size=n_q)]
    for k in (1, 3, 16, 40):  # cuts through tie groups of ~16 duplicates
        scores, idx = knn(q, r, k, metric=metric)
        ref_scores, ref_idx = brute_force(q, r, k, metric)
        np.testing.assert_array_equal(idx, ref_idx)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exclude_self_is_leave_one_out(metric):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x[10] = x[3]  # a duplicate: row 10 must still find row 3 and never itself
    scores, idx = knn(x, x, 5, metric=metric, exclude_self=True)
    ref_scores, ref_idx = brute_force(x, x, 5, metric, exclude_self=True)
    assert not np.any(idx == np.arange(50)[:, None])
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
    assert idx[10, 0] == 3 and idx[3, 0] == 10


def test_exclude_self_with_many_duplicates_drops_the_right_row():
    x = np.ones((6, 3), dtype=np.float32)
    _, idx = knn(x, x, 5, exclude_self=True)
    for i in range(6):
        assert idx[i].tolist() == [j for j in range(6) if j != i]


def test_torch_input_and_k_equal_to_size():
    x = torch.randn(20, 4)
    scores, idx = knn(x, x, 20)
    assert sorted(idx[0].tolist()) == list(range(20))
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_k_too_large_is_one_line_error():
    x = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match=r"^k=11 is larger than the number of references \(10\)[^\n]*$"):
        knn(x, x, 11)
    with pytest.raises(ValueError, match=r"^k=10 [^\n]*exclude_self"):
        knn(x, x, 10, exclude_self=True)
    with pytest.raises(ValueError, match="k=0"):
        knn(x, x, 0)


def test_exclude_self_needs_the_same_set():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="exclude_self"):
        knn(rng.normal(size=(5, 3)), rng.normal(size=(5, 3)), 2, exclude_self=True)


def test_device_cuda_without_gpu_is_an_error():
    import faiss

    if faiss.get_num_gpus() > 0:
        pytest.skip("a GPU is visible")
    with pytest.raises(ValueError, match="device='cuda'"):
        knn(np.eye(3), np.eye(3), 1, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_gpu_index_matches_cpu_including_k_above_faiss_gpu_limit(metric):
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU")
    rng = np.random.default_rng(5)
    q = rng.normal(size=(300, 32)).astype(np.float32)
    r = rng.normal(size=(5000, 32)).astype(np.float32)
    for k in (10, 3000):  # 3000 > 2048: searched on the CPU
        s_gpu, i_gpu = knn(q, r, k, metric=metric, device="cuda")
        s_cpu, i_cpu = knn(q, r, k, metric=metric, device="cpu")
        np.testing.assert_allclose(s_gpu, s_cpu, rtol=1e-4, atol=1e-4)
        assert np.mean(i_gpu == i_cpu) > 0.999
