"""BatchAllMiner and PairMiner against pytorch-metric-learning and loops."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from miners import BatchAllMiner, PairMiner
from miners.distances import distance_matrix
from tests.miners.conftest import as_set, random_batch


@pytest.mark.parametrize("seed,margin", [(0, 0.2), (1, 0.05), (2, 1.5)])
def test_batch_all_nonzero_matches_pml(seed: int, margin: float) -> None:
    emb, labels = random_batch(40, 8, 6, seed)
    ours = BatchAllMiner(margin=margin, only_nonzero=True)(emb, labels)
    ref = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="all")(emb, labels)
    assert len(ours[0]) == len(ref[0]) and as_set(ours) == as_set(ref)


def test_batch_all_every_triplet() -> None:
    emb, labels = random_batch(25, 4, 5, 3)
    labels[0] = 42
    ours = BatchAllMiner()(emb, labels)
    ref = lmu.get_all_triplets_indices(labels)
    assert len(ours[0]) == len(ref[0]) and as_set(ours) == as_set(ref)


@pytest.mark.parametrize("pos_margin,neg_margin", [(0.2, 0.8), (0.0, 1.3)])
def test_pair_margin_matches_pml(pos_margin: float, neg_margin: float) -> None:
    emb, labels = random_batch(40, 8, 6, 4)
    ours = PairMiner(pos_margin=pos_margin, neg_margin=neg_margin)(emb, labels)
    ref = pml_miners.PairMarginMiner(pos_margin=pos_margin, neg_margin=neg_margin)(emb, labels)
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


def test_all_pairs_and_hardest_negatives() -> None:
    emb, labels = random_batch(20, 4, 4, 5)
    a1, p, a2, n = PairMiner()(emb, labels)
    for a, b in zip((a1, p, a2, n), lmu.get_all_pairs_indices(labels)):
        assert torch.equal(a, b)
    _, _, a2, n = PairMiner(hardest_negatives=True)(emb, labels)
    dist = distance_matrix(emb)
    assert a2.tolist() == list(range(20))  # every anchor has a negative here
    for a, m in zip(a2.tolist(), n.tolist()):
        negs = [j for j in range(20) if labels[j] != labels[a]]
        assert m == min(negs, key=lambda j: dist[a, j].item())
