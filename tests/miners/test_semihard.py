"""SemiHardMiner: "all" against pytorch-metric-learning, "facenet" against a brute-force loop."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import miners as pml_miners

from miners import SemiHardMiner
from miners.distances import distance_matrix
from tests.miners.conftest import as_set, random_batch


@pytest.mark.parametrize("seed,batch,classes,margin", [(0, 40, 5, 0.2), (1, 64, 8, 0.1), (2, 33, 33, 0.5), (3, 50, 4, 1.0)])
def test_all_matches_pml(seed: int, batch: int, classes: int, margin: float) -> None:
    emb, labels = random_batch(batch, 10, classes, seed)
    ours = SemiHardMiner(margin=margin)(emb, labels)
    ref = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")(emb, labels)
    assert len(ours[0]) == len(ref[0])
    assert as_set(ours) == as_set(ref)


def facenet_reference(emb: torch.Tensor, labels: torch.Tensor, fallback: str) -> list[tuple[int, int, float]]:
    """(a, p, d_an) per anchor-positive pair, by looping over every negative."""
    dist = distance_matrix(emb.double())
    out = []
    for a in range(len(labels)):
        negs = [n for n in range(len(labels)) if labels[n] != labels[a]]
        for p in range(len(labels)):
            if p == a or labels[p] != labels[a] or not negs:
                continue
            farther = [dist[a, n].item() for n in negs if dist[a, n] > dist[a, p]]
            if farther:
                out.append((a, p, min(farther)))
            elif fallback == "farthest":
                out.append((a, p, max(dist[a, n].item() for n in negs)))
    return out


@pytest.mark.parametrize("fallback", ["farthest", "drop"])
@pytest.mark.parametrize("seed", [0, 1])
def test_facenet_matches_brute_force_with_ties_and_singletons(seed: int, fallback: str) -> None:
    emb, labels = random_batch(30, 3, 6, seed)
    emb = emb.double()
    emb[5] = emb[6]  # exact ties between negatives of several anchors
    emb[7] = emb[6]
    labels[0] = 99  # a class with one sample: anchor without positive
    ours = SemiHardMiner(selection="facenet", fallback=fallback)(emb, labels)
    dist = distance_matrix(emb)
    got = [(a, p, dist[a, n].item()) for a, p, n in zip(*[t.tolist() for t in ours])]
    expected = facenet_reference(emb, labels, fallback)
    assert [g[:2] for g in got] == [e[:2] for e in expected]  # one triplet per anchor-positive pair, same order
    assert torch.allclose(torch.tensor([g[2] for g in got]), torch.tensor([e[2] for e in expected]), atol=1e-9)
    for a, p, n in zip(*[t.tolist() for t in ours]):
        assert labels[n] != labels[a] and labels[p] == labels[a] and p != a


def test_facenet_uses_strictly_farther_negative_on_exact_tie() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: positive 1 at sqrt(2); negative 2 at exactly sqrt(2) (not farther), negative 3 at 2
    a, p, n = SemiHardMiner(selection="facenet")(emb, labels)
    assert (a[0].item(), p[0].item(), n[0].item()) == (0, 1, 3)


def test_empty_batches() -> None:
    for labels in (torch.arange(6), torch.zeros(6, dtype=torch.long)):
        for selection in ("all", "facenet"):
            out = SemiHardMiner(selection=selection)(torch.randn(6, 4), labels)
            assert all(t.numel() == 0 for t in out)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="selection"):
        SemiHardMiner(selection="hardest")
    with pytest.raises(ValueError, match="margin"):
        SemiHardMiner(margin=-0.1)
