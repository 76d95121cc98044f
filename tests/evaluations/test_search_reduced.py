"""Reduced-precision search against the exact faiss search (``evaluations.knn``) on the same data."""
from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from evaluations import knn, knn_reduced


def clustered(seed: int = 0, n_ref: int = 4000, n_query: int = 400, d: int = 32, classes: int = 200):
    """Queries and references around shared class centres: neighbours are distinct but close."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)).astype(np.float32)
    refs = centres[rng.integers(0, classes, n_ref)] + 0.5 * rng.standard_normal((n_ref, d)).astype(np.float32)
    queries = centres[rng.integers(0, classes, n_query)] + 0.5 * rng.standard_normal((n_query, d)).astype(np.float32)
    return queries, refs


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_refined_search_equals_exact(metric: str, dtype: str) -> None:
    q, r = clustered()
    exact_s, exact_i = knn(q, r, 5, metric=metric)
    s, i = knn_reduced(q, r, 5, metric=metric, dtype=dtype, device="cpu")
    assert s.dtype == np.float32 and i.dtype == np.int64 and s.shape == i.shape == (400, 5)
    np.testing.assert_array_equal(i, exact_i)
    np.testing.assert_allclose(s, exact_s, rtol=1e-5, atol=1e-4 if metric == "l2" else 1e-6)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("dtype, min_top1", [("bf16", 0.85), ("fp16", 0.97)])
def test_unrefined_top1_agreement_is_high(metric: str, dtype: str, min_top1: float) -> None:
    # Without re-scoring, the order comes from rounded products: bf16 keeps 8 significant bits,
    # fp16 11, so near-ties swap. The bounds hold with a margin on this data (measured: bf16 ~0.92,
    # fp16 ~0.99 at 20,000 references), and a broken search (wrong offsets, merge) gives ~0.
    q, r = clustered(seed=1)
    exact_s, exact_i = knn(q, r, 3, metric=metric)
    s, i = knn_reduced(q, r, 3, metric=metric, dtype=dtype, device="cpu", refine=False)
    assert np.mean(i[:, 0] == exact_i[:, 0]) >= min_top1
    # Rounding both factors to eps = 2^-8 (bf16) or 2^-11 (fp16) moves <q, r> by at most about
    # 2 eps |q||r| (Cauchy-Schwarz); the l2 distance carries 2 <q, r>.
    eps = 2.0 ** (-8 if dtype == "bf16" else -11)
    if metric == "cosine":
        bound = 2 * eps
    else:
        bound = 4 * eps * np.linalg.norm(q, axis=1).max() * np.linalg.norm(r, axis=1).max()
    assert np.abs(s - exact_s).max() <= bound


def test_blocks_and_chunks_do_not_change_the_result() -> None:
    q, r = clustered(seed=2, n_ref=500, n_query=37)
    whole = knn_reduced(q, r, 4, device="cpu", chunk=500, query_chunk=37)
    for chunk, query_chunk in [(7, 5), (64, 1), (499, 36)]:
        blocked = knn_reduced(q, r, 4, device="cpu", chunk=chunk, query_chunk=query_chunk)
        np.testing.assert_array_equal(blocked[1], whole[1])
        np.testing.assert_array_equal(blocked[0], whole[0])
    # Unrefined, bf16 scores tie often and top-k breaks a tie at the k-th place arbitrarily, so
    # only the scores are compared (to bf16 rounding: block shapes change the GEMM's summation order).
    unrefined = knn_reduced(q, r, 4, device="cpu", chunk=7, query_chunk=5, refine=False)
    np.testing.assert_allclose(unrefined[0], knn_reduced(q, r, 4, device="cpu", refine=False)[0], atol=2 ** -7)


def test_torch_input_and_ties_by_lower_index() -> None:
    r = np.array([[1, 0], [0, 1], [1, 0], [2, 0], [0, 3]], dtype=np.float32)  # rows 0, 2, 3 tie for [1, 0]
    q = np.array([[1, 0.01], [0, 1]], dtype=np.float32)
    exact = knn(q, r, 4)
    for qq, rr in [(q, r), (torch.from_numpy(q), torch.from_numpy(r))]:
        s, i = knn_reduced(qq, rr, 4, device="cpu")
        np.testing.assert_array_equal(i, exact[1])
        np.testing.assert_allclose(s, exact[0], atol=1e-6)
    assert i[0, :3].tolist() == [0, 2, 3]


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k=0 must be a positive integer"),
    ({"k": 11}, "k=11 is larger than the number of references (10)"),
    ({"dtype": "fp8"}, "dtype='fp8' is not supported"),
    ({"metric": "dot"}, "metric='dot' is not supported"),
    ({"backend": "scann"}, "backend='scann' is not supported"),
    ({"chunk": 0}, "chunk=0 must be a positive integer"),
    ({"query_chunk": -1}, "query_chunk=-1 must be a positive integer"),
    ({"device": "tpu"}, "device='tpu' is not supported"),
])
def test_bad_arguments_are_one_line_errors(kwargs: dict, message: str) -> None:
    q, r = np.ones((3, 4), np.float32), np.ones((10, 4), np.float32)
    args = {"k": 1} | kwargs
    k = args.pop("k")
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")) as err:
        knn_reduced(q, r, k, **args)
    assert "\n" not in str(err.value)


def test_bad_inputs_are_one_line_errors() -> None:
    r = np.ones((10, 4), np.float32)
    with pytest.raises(ValueError, match="queries have 3 dimensions but references have 4"):
        knn_reduced(np.ones((2, 3)), r, 1)
    bad = r.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"references contains NaN or inf \(first at row 7\)"):
        knn_reduced(np.ones((2, 4)), bad, 1)
    with pytest.raises(ValueError, match=r"references contains NaN or inf \(first at row 7\)"):
        knn_reduced(torch.ones(2, 4), torch.from_numpy(bad), 1)
    with pytest.raises(ValueError, match="queries must be a 2-D array"):
        knn_reduced(torch.ones(4), r, 1)
    with pytest.raises(ValueError, match="fp16's 65504"):
        knn_reduced(np.full((2, 4), 300.0), np.full((10, 4), 300.0), 1, metric="l2", dtype="fp16")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error without a GPU")
def test_cuda_without_gpu_is_one_line_error() -> None:
    with pytest.raises(ValueError, match="device='cuda' but torch sees no CUDA GPU"):
        knn_reduced(np.ones((2, 4)), np.ones((3, 4)), 1, device="cuda")


@pytest.mark.skipif(faiss.get_num_gpus() > 0, reason="checks the error without a faiss GPU")
def test_faiss_backend_without_gpu_is_one_line_error() -> None:
    with pytest.raises(ValueError, match="backend='faiss' needs the faiss GPU build"):
        knn_reduced(np.ones((2, 4)), np.ones((3, 4)), 1, backend="faiss", dtype="fp16", device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_gpu_torch_search_equals_cpu_and_exact(metric: str) -> None:
    q, r = clustered(seed=3)
    exact = knn(q, r, 5, metric=metric)
    gpu = knn_reduced(torch.from_numpy(q).cuda(), torch.from_numpy(r).cuda(), 5, metric=metric, device="cuda")
    np.testing.assert_array_equal(gpu[1], exact[1])
    np.testing.assert_array_equal(gpu[1], knn_reduced(q, r, 5, metric=metric, device="cpu")[1])


@pytest.mark.gpu
@pytest.mark.skipif(faiss.get_num_gpus() == 0, reason="needs a GPU that faiss sees")
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_gpu_faiss_fp16_backend_equals_exact(metric: str) -> None:
    q, r = clustered(seed=4)
    exact = knn(q, r, 5, metric=metric)
    s, i = knn_reduced(q, r, 5, metric=metric, dtype="fp16", backend="faiss")
    np.testing.assert_array_equal(i, exact[1])
    np.testing.assert_allclose(s, exact[0], rtol=1e-5, atol=1e-4)
