"""knn(shards=N): the references split over N flat indexes in a faiss IndexShards must give
exactly the unsharded result (and the brute-force one), ties at the k-th place included.

On the CPU an explicit N builds CPU shards, which runs the sharded code path without GPUs;
a fake faiss GPU API (CPU indexes behind the GPU names) checks the multi-GPU wiring.
"""

import numpy as np
import pytest

from evaluations import knn
from evaluations import search


def brute_force(q, r, k, metric, exclude_self=False):
    """float64 scores, stable sort: equal scores by lower reference index."""
    q64, r64 = np.asarray(q, dtype=np.float64), np.asarray(r, dtype=np.float64)
    if metric == "cosine":
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
        r64 = r64 / np.linalg.norm(r64, axis=1, keepdims=True)
        key = -(q64 @ r64.T)
    else:
        key = ((q64[:, None, :] - r64[None, :, :]) ** 2).sum(-1)
    if exclude_self:
        np.fill_diagonal(key, np.inf)
    idx = np.argsort(key, axis=1, kind="stable")[:, :k]
    key = np.take_along_axis(key, idx, axis=1)
    return (-key if metric == "cosine" else key), idx


def tie_set(metric, n_ref, n_q, seed):
    """References made of a few base rows repeated (tie groups of ~n_ref/5) whose
    scores float32 computes exactly wherever the row sits: small integers for l2,
    scaled signed axis directions for cosine (scores in {-1, 0, 1})."""
    rng = np.random.default_rng(seed)
    if metric == "l2":
        base = rng.integers(-3, 4, size=(5, 4)).astype(np.float32)
        r = base[rng.integers(0, 5, size=n_ref)]
    else:
        base = np.concatenate([np.eye(4), -np.eye(4)[:1]]).astype(np.float32)
        r = base[rng.integers(0, 5, size=n_ref)] * rng.integers(1, 4, size=(n_ref, 1)).astype(np.float32)
    return base[rng.integers(0, 5, size=n_q)], r


def assert_same(got, want, atol=1e-6):
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=atol)
    assert got[0].dtype == np.float32 and got[1].dtype == np.int64


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("shards", [2, 3, 7])
@pytest.mark.parametrize("n_q", [5, 60])  # faiss switches to its BLAS path at 20 queries
def test_random_sharded_matches_unsharded(metric, shards, n_q):
    rng = np.random.default_rng(10 + shards)
    q = rng.normal(size=(n_q, 16)).astype(np.float32)
    r = rng.normal(size=(101, 16)).astype(np.float32)  # 101 is divisible by none of the shard counts
    for k in (1, 10, 60):  # 60 > the size of every shard when shards >= 2
        got = knn(q, r, k, metric=metric, shards=shards, query_chunk=17)
        assert_same(got, knn(q, r, k, metric=metric))
        np.testing.assert_array_equal(got[1], brute_force(q, r, k, metric)[1])


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("shards", [2, 3, 5])
@pytest.mark.parametrize("n_q", [6, 40])
def test_ties_straddling_k_across_shards(metric, shards, n_q):
    q, r = tie_set(metric, 83, n_q, seed=shards)
    for k in (1, 3, 16, 40):  # cuts through tie groups spread over every shard
        got = knn(q, r, k, metric=metric, shards=shards)
        assert_same(got, knn(q, r, k, metric=metric))
        ref_scores, ref_idx = brute_force(q, r, k, metric)
        np.testing.assert_array_equal(got[1], ref_idx)
        np.testing.assert_allclose(got[0], ref_scores, rtol=0, atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "l2"])
@pytest.mark.parametrize("shards", [2, 4])
def test_exclude_self_sharded(metric, shards):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x[40] = x[3]  # duplicates in different shards: each must find the other, never itself
    x[41] = x[3]
    got = knn(x, x, 5, metric=metric, exclude_self=True, shards=shards)
    assert_same(got, knn(x, x, 5, metric=metric, exclude_self=True))
    np.testing.assert_array_equal(got[1], brute_force(x, x, 5, metric, exclude_self=True)[1])
    assert got[1][3, :2].tolist() == [40, 41] and got[1][40, :2].tolist() == [3, 41]


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_tie_running_past_the_first_search_sharded(metric):
    # Every row equal: the tie at the k-th place runs to the end, so the search is
    # repeated with 2k+2, 4k+4, ... neighbours through the IndexShards.
    x = np.ones((37, 3), dtype=np.float32)
    _, idx = knn(x, x, 5, metric=metric, exclude_self=True, shards=4)
    for i in range(37):
        assert idx[i].tolist() == [j for j in range(37) if j != i][:5]


def test_one_reference_per_shard():
    rng = np.random.default_rng(4)
    q, r = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    for metric in ("cosine", "l2"):
        assert_same(knn(q, r, 9, metric=metric, shards=9), knn(q, r, 9, metric=metric))


def test_shards_are_contiguous_slices_with_global_ids():
    import faiss

    r = np.arange(101 * 3, dtype=np.float32).reshape(101, 3)
    index = search._build_index(r, "l2", False, 3)
    assert isinstance(index, faiss.IndexShards) and index.ntotal == 101
    parts = [faiss.downcast_index(index.at(s)) for s in range(3)]
    assert [p.ntotal for p in parts] == [33, 34, 34]
    np.testing.assert_array_equal(np.concatenate([p.reconstruct_n(0, p.ntotal) for p in parts]), r)
    _, ids = index.search(r[[0, 40, 100]], 1)
    assert ids.ravel().tolist() == [0, 40, 100]


def test_default_is_one_shard_on_the_cpu(monkeypatch):
    seen = []
    build = search._build_index
    monkeypatch.setattr(search, "_build_index", lambda *args: seen.append(args[3:]) or build(*args))
    knn(np.eye(4), np.eye(4), 2, device="cpu")
    knn(np.eye(4), np.eye(4), 2, device="cpu", shards=3)
    assert seen == [(1,), (3,)]


@pytest.mark.parametrize("shards", [0, -2, True, 2.0, "2"])
def test_bad_shards(shards):
    with pytest.raises(ValueError, match=r"^shards=.* must be a positive integer or None$"):
        knn(np.eye(3), np.eye(3), 1, shards=shards)


def test_more_shards_than_references_is_an_error():
    x = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match=r"^shards=11 is more than the 10 references; [^\n]*shards <= 10$"):
        knn(x, x, 2, shards=11)


# --- the multi-GPU wiring, with CPU indexes behind faiss' GPU names -------------------


class FakeGpuIndexFlatConfig:
    def __init__(self):
        self.device = 0


@pytest.fixture
def fake_gpus(monkeypatch):
    """faiss that reports ``n`` GPUs; GpuIndexFlatIP/L2 are CPU flat indexes and each
    creation is recorded as (resources, device)."""
    import faiss

    made = []

    def fake_index(cpu_class):
        def build(resources, d, config):
            assert isinstance(resources, FakeResources) and isinstance(config, FakeGpuIndexFlatConfig)
            made.append((resources, config.device))
            return cpu_class(d)

        return build

    class FakeResources:
        pass

    shards_args = []
    real_shards = faiss.IndexShards

    def recording_shards(*args):
        shards_args.append(args)
        return real_shards(*args)

    def install(n):
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: n)
        monkeypatch.setattr(faiss, "StandardGpuResources", FakeResources, raising=False)
        monkeypatch.setattr(faiss, "GpuIndexFlatConfig", FakeGpuIndexFlatConfig, raising=False)
        monkeypatch.setattr(faiss, "GpuIndexFlatIP", fake_index(faiss.IndexFlatIP), raising=False)
        monkeypatch.setattr(faiss, "GpuIndexFlatL2", fake_index(faiss.IndexFlatL2), raising=False)
        monkeypatch.setattr(faiss, "IndexShards", recording_shards)
        monkeypatch.setattr(search, "_gpu_resources", {})
        return made, shards_args

    return install


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_one_shard_per_gpu_by_default(fake_gpus, metric):
    made, shards_args = fake_gpus(2)
    q, r = tie_set(metric, 61, 30, seed=7)
    got = knn(q, r, 16, metric=metric, device="cuda")
    assert [device for _, device in made] == [0, 1]
    assert shards_args == [(4, True, True)]  # (d, threaded, successive_ids)
    assert made[0][0] is not made[1][0]  # one StandardGpuResources per GPU
    np.testing.assert_array_equal(got[1], brute_force(q, r, 16, metric)[1])
    made.clear()
    knn(q, r, 3, metric=metric, device="cuda")
    assert [res for res, _ in made] == list(search._gpu_resources.values())  # reused, not recreated


def test_more_shards_than_gpus_wrap_around_unthreaded(fake_gpus):
    made, shards_args = fake_gpus(2)
    q, r = tie_set("l2", 50, 9, seed=8)
    got = knn(q, r, 20, metric="l2", device="cuda", shards=3)
    assert [device for _, device in made] == [0, 1, 0]
    assert shards_args == [(4, False, True)]  # GPU 0 holds two shards sharing its resources
    assert_same(got, knn(q, r, 20, metric="l2", device="cpu"))


def test_default_shards_clamped_to_the_references(fake_gpus):
    made, _ = fake_gpus(8)
    assert_same(knn(np.eye(3), np.eye(3), 3, device="cuda"), knn(np.eye(3), np.eye(3), 3, device="cpu"))
    assert [device for _, device in made] == [0, 1, 2]


def test_one_gpu_keeps_one_unsharded_index(fake_gpus):
    made, shards_args = fake_gpus(1)
    knn(np.eye(3), np.eye(3), 2, device="cuda")
    assert [device for _, device in made] == [0] and shards_args == []


def test_tie_past_the_gpu_limit_goes_to_one_cpu_index(fake_gpus, monkeypatch):
    made, _ = fake_gpus(2)
    monkeypatch.setattr(search, "GPU_MAX_K", 8)
    seen = []
    build = search._build_index
    monkeypatch.setattr(search, "_build_index", lambda *args: seen.append(args[2:]) or build(*args))
    x = np.ones((20, 3), dtype=np.float32)  # one tie group: searches k+2 = 5, then 10 > GPU_MAX_K
    _, idx = knn(x, x, 3, exclude_self=True, device="cuda")
    assert seen == [(True, 2), (False,)]
    assert idx.tolist() == [[j for j in range(20) if j != i][:3] for i in range(20)]


# --- real GPUs -------------------------------------------------------------------------


def faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_gpu_shards_exact_on_ties(metric):
    if faiss_gpus() == 0:
        pytest.skip("faiss sees no GPU")
    q, r = tie_set(metric, 3001, 300, seed=9)
    for shards in (None, 2, 3):  # on one GPU, 2 and 3 shards all sit on GPU 0
        for k in (1, 16, 700):
            got = knn(q, r, k, metric=metric, device="cuda", shards=shards)
            assert_same(got, brute_force(q, r, k, metric))


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_several_gpus_match_one(metric):
    if faiss_gpus() < 2:
        pytest.skip("needs faiss to see at least 2 GPUs")
    rng = np.random.default_rng(11)
    q = rng.normal(size=(500, 64)).astype(np.float32)
    r = rng.normal(size=(20001, 64)).astype(np.float32)
    s_all, i_all = knn(q, r, 50, metric=metric, device="cuda")  # one shard per GPU
    s_one, i_one = knn(q, r, 50, metric=metric, device="cuda", shards=1)
    np.testing.assert_allclose(s_all, s_one, rtol=1e-4, atol=1e-4)
    assert np.mean(i_all == i_one) > 0.999  # GPU GEMM tiling may differ by an ulp per shard


def test_pinned_gpu_device_is_checked():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(ValueError, match="'cuda:x' is not supported"):
        knn(x, x, 1, device="cuda:x")
    if search._use_gpu("auto"):
        pytest.skip("faiss sees a GPU here")
    with pytest.raises(ValueError, match="faiss sees no GPU"):
        knn(x, x, 1, device="cuda:0")


@pytest.mark.gpu
def test_pinned_gpu_equals_cpu():
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU")
    rng = np.random.default_rng(3)
    q, r = rng.normal(size=(50, 16)).astype(np.float32), rng.normal(size=(500, 16)).astype(np.float32)
    last = f"cuda:{faiss.get_num_gpus() - 1}"
    np.testing.assert_array_equal(knn(q, r, 10, device=last)[1], knn(q, r, 10, device="cpu")[1])
    with pytest.raises(ValueError, match="not sharded"):
        knn(q, r, 10, device=last, shards=2)
