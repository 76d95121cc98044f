"""Evaluation under torchrun: each rank searches its share of the references and the merged
neighbours (and the retrieval metrics built on them) equal one process's search."""
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import evaluations
from mlcompare.train.distributed import Context, gather_rows, knn_over_ranks, share
from test_distributed import _env, free_port


def _search_worker(rank: int, world: int, port: int, x: np.ndarray, labels: np.ndarray, out: dict) -> None:
    _env(rank, world, port)
    dist.init_process_group("gloo")
    ctx = Context(rank, world, rank)
    search = knn_over_ranks(ctx, "cpu")
    got = {}
    for metric in ("cosine", "l2"):
        got[metric, False] = search(x[:7], x, 9, metric=metric)
        got[metric, True] = search(x, x, 6, metric=metric, exclude_self=True)
    got["retrieval"] = evaluations.retrieval(x, labels, search=search, nmi=False)
    got["rows"] = gather_rows(torch.arange(10)[share(10, ctx)], ctx)
    out[rank] = got
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 3])
def test_search_over_ranks_equals_one_search(world):
    rng = np.random.default_rng(0)
    base = rng.integers(-2, 3, size=(6, 4)).astype(np.float32)
    x = base[rng.integers(0, 6, size=40)]  # duplicate rows: ties across the ranks' shares
    x[::3] += rng.normal(size=(14, 4)).astype(np.float32)
    labels = rng.integers(0, 5, size=40)
    out = mp.Manager().dict()
    mp.spawn(_search_worker, args=(world, free_port(), x, labels, out), nprocs=world, join=True)
    for rank in range(world):
        got = out[rank]
        for metric in ("cosine", "l2"):
            for exclude_self in (False, True):
                scores, index = (evaluations.knn(x, x, 6, metric=metric, exclude_self=True) if exclude_self
                                 else evaluations.knn(x[:7], x, 9, metric=metric))
                np.testing.assert_array_equal(got[metric, exclude_self][1], index)
                np.testing.assert_allclose(got[metric, exclude_self][0], scores, rtol=1e-6, atol=1e-6)
        assert got["retrieval"] == evaluations.retrieval(x, labels, nmi=False)
        assert got["rows"].tolist() == list(range(10))
