"""BatchHardMiner against pytorch-metric-learning and a per-anchor loop."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import miners as pml_miners

from miners import BatchHardMiner
from tests.miners.conftest import random_batch


@pytest.mark.parametrize("seed,batch,classes", [(0, 32, 4), (1, 64, 16), (2, 20, 20)])
def test_matches_pml(seed: int, batch: int, classes: int) -> None:
    emb, labels = random_batch(batch, 12, classes, seed)
    ours = BatchHardMiner()(emb, labels)
    ref = pml_miners.BatchHardMiner()(emb, labels)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


def test_matches_loop_without_normalisation() -> None:
    emb, labels = random_batch(30, 5, 6, seed=3)
    a, p, n = BatchHardMiner(normalize=False)(emb, labels)
    dist = torch.cdist(emb.double(), emb.double())
    expected = []
    for i in range(len(labels)):
        pos = [j for j in range(len(labels)) if labels[j] == labels[i] and j != i]
        neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
        if pos and neg:
            expected.append((i, max(pos, key=lambda j: dist[i, j]), min(neg, key=lambda j: dist[i, j])))
    assert list(zip(a.tolist(), p.tolist(), n.tolist())) == expected


def test_singletons_and_one_class_give_empty() -> None:
    emb = torch.randn(5, 4)
    a, p, n = BatchHardMiner()(emb, torch.arange(5))
    assert a.numel() == p.numel() == n.numel() == 0 and a.dtype == torch.int64
    a, _, _ = BatchHardMiner()(emb, torch.zeros(5, dtype=torch.long))
    assert a.numel() == 0
