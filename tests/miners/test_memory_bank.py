"""MemoryBankMiner against a brute-force torch search over the same bank."""
from __future__ import annotations

import pytest
import torch

from miners import MemoryBankMiner
from miners.distances import distance_matrix
from tests.miners.conftest import random_batch


def brute_force(bank: torch.Tensor, bank_labels: torch.Tensor, x: torch.Tensor, labels: torch.Tensor,
                k: int, rule: str) -> list[tuple[int, int, list[float]]]:
    """(anchor, hardest positive, sorted negative distances) per anchor with an in-batch positive."""
    in_batch = distance_matrix(x, normalize=False).double()
    to_bank = torch.cdist(x.double(), bank.double())
    out = []
    for a in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != a and labels[j] == labels[a]]
        if not pos:
            continue
        p = max(pos, key=lambda j: in_batch[a, j].item())
        floor = in_batch[a, p].item() if rule == "semihard" else -1.0
        cands = sorted(d for d, y in zip(to_bank[a].tolist(), bank_labels.tolist()) if y != labels[a] and d > floor + 1e-6)
        if cands:
            out.append((a, p, cands[:k]))
    return out


@pytest.mark.parametrize("rule", ["hardest", "semihard"])
@pytest.mark.parametrize("k", [1, 3])
def test_matches_brute_force_after_wraparound(rule: str, k: int) -> None:
    miner = MemoryBankMiner(size=50, embedding_dim=6, rule=rule, negatives_per_anchor=k, extra_candidates=0)
    history = []
    for step in range(4):  # 4 x 20 > 50: the ring buffer wraps
        emb, labels = random_batch(20, 6, 5, seed=step)
        if step == 3:
            emb[1] = emb[2]  # ties in the bank
            emb[3] = emb[2]
            labels[0] = 77  # a singleton class: no positive, no triplet
        history.append((torch.nn.functional.normalize(emb, dim=1), labels))
        anchor, positive, negatives = miner(emb, labels)
    bank = torch.cat([h[0] for h in history])[-50:]
    bank_labels = torch.cat([h[1] for h in history])[-50:]
    got_bank, got_labels = miner.bank()
    assert sorted(map(tuple, got_bank.tolist())) == sorted(map(tuple, bank.tolist()))
    assert sorted(got_labels.tolist()) == sorted(bank_labels.tolist())

    x, labels = history[-1]
    expected = brute_force(bank, bank_labels, x, labels, k, rule)
    got: dict[tuple[int, int], list[float]] = {}
    for a, p, neg in zip(anchor.tolist(), positive.tolist(), negatives):
        got.setdefault((a, p), []).append((x[a] - neg).norm().item())
    assert 0 not in anchor.tolist()
    assert list(got) == [(a, p) for a, p, _ in expected]
    for (a, p, dists) in expected:
        assert sorted(got[(a, p)]) == pytest.approx(dists, abs=1e-5)
    slot_labels = got_labels[miner.last_negative_slots]
    assert bool((slot_labels != labels[anchor]).all())


def test_search_widens_past_same_label_neighbours() -> None:
    # the 60 nearest bank entries of anchor 0 share its label; the 61st is the hardest negative
    torch.manual_seed(0)
    miner = MemoryBankMiner(size=200, embedding_dim=3, normalize=False, extra_candidates=0)
    near = torch.tensor([1.0, 0.0, 0.0]) + 0.01 * torch.randn(60, 3)
    miner.enqueue(near, torch.zeros(60, dtype=torch.long))
    miner.enqueue(torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]), torch.tensor([1, 2]))
    emb = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.01, 0.0], [0.0, 0.0, 5.0], [0.0, 0.0, 5.1]])
    anchor, _, negatives = miner(emb, torch.tensor([0, 0, 3, 3]))
    assert anchor.tolist() == [0, 1, 2, 3]
    assert negatives[0].tolist() == [0.0, 1.0, 0.0]


def test_empty_and_invalid() -> None:
    miner = MemoryBankMiner(size=10, embedding_dim=4)
    a, p, n = miner(torch.randn(5, 4), torch.arange(5))
    assert a.numel() == 0 and n.shape == (0, 4)
    with pytest.raises(ValueError, match="embedding_dim=4"):
        miner(torch.randn(5, 3), torch.arange(5))
    with pytest.raises(ValueError, match="size"):
        MemoryBankMiner(size=0, embedding_dim=4)
    with pytest.raises(ValueError, match="rule"):
        MemoryBankMiner(size=4, embedding_dim=4, rule="easy")


def test_triplet_loss_consumes_bank_negatives() -> None:
    from mlcompare import losses

    miner = MemoryBankMiner(size=64, embedding_dim=5)
    loss = losses.get("triplet", num_classes=4, embedding_dim=5, margin=0.3, reduction="all", miner=miner)
    emb, labels = random_batch(16, 5, 4, seed=9)
    x = emb.clone().requires_grad_(True)
    value = loss(x, labels)
    value.backward()
    a, p = miner(emb, labels)[:2]  # second call: same batch again, now twice in the bank
    xn = torch.nn.functional.normalize(emb, dim=1)
    bank, bank_labels = miner.bank()
    d = torch.cdist(xn, bank)
    expected = []
    for i, j in zip(a.tolist(), p.tolist()):
        d_an = d[i][bank_labels != labels[i]].min()
        expected.append(torch.relu((xn[i] - xn[j]).norm() - d_an + 0.3))
    assert value.item() == pytest.approx(torch.stack(expected).mean().item(), abs=1e-5)
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_gpu_search_call_matches_faiss_signature() -> None:
    """The GPU branch cannot run here; check that its call binds to faiss' numpy knn_gpu, also after torch_utils."""
    import inspect

    import faiss
    import numpy as np

    from miners.memory_bank import gpu_knn_function

    def bind() -> None:
        q = np.zeros((2, 4), dtype=np.float32)
        inspect.signature(gpu_knn_function()).bind(None, q, q, 1, vectorsMemoryLimit=1, queriesMemoryLimit=1)

    bind()
    import faiss.contrib.torch_utils  # noqa: F401  (replaces faiss.knn_gpu with a torch version)

    bind()
    assert faiss.get_num_gpus() >= 0


@pytest.mark.gpu
def test_gpu_search_matches_cpu_search() -> None:
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU")
    emb, labels = random_batch(64, 16, 8, seed=11)
    results = []
    for use_gpu in (False, True):
        miner = MemoryBankMiner(size=5000, embedding_dim=16, use_gpu=use_gpu, negatives_per_anchor=3)
        for step in range(5):
            miner.enqueue(*random_batch(1000, 16, 50, seed=100 + step))
        results.append(miner(emb, labels))
    for a, b in zip(results[0], results[1]):
        torch.testing.assert_close(a, b)


def test_in_place_gpu_search_call_matches_faiss_torch_utils_signature() -> None:
    """The in-place GPU branch cannot run here; check that its call binds to faiss' torch version."""
    import inspect

    from faiss.contrib import torch_utils

    q = torch.zeros(2, 4)
    inspect.signature(torch_utils.torch_replacement_knn_gpu).bind(None, q, q, 1, device=0)


def test_cpu_embeddings_keep_the_bank_in_host_memory() -> None:
    miner = MemoryBankMiner(size=100, embedding_dim=16)
    miner(*random_batch(32, 16, 8, seed=1))
    bank, labels = miner.bank()
    assert miner.device.type == "cpu" and bank.shape == (32, 16) and labels.shape == (32,)


@pytest.mark.gpu
def test_cuda_embeddings_are_mined_against_a_bank_on_their_gpu() -> None:
    import faiss

    if faiss.get_num_gpus() == 0:
        pytest.skip("faiss sees no GPU")
    emb, labels = random_batch(64, 16, 8, seed=11)
    host, device = (MemoryBankMiner(size=5000, embedding_dim=16, negatives_per_anchor=3) for _ in range(2))
    for step in range(5):
        batch = random_batch(1000, 16, 50, seed=100 + step)
        host.enqueue(*batch)
        device.enqueue(batch[0].cuda(), batch[1].cuda())
    want = host(emb, labels)
    got = device(emb.cuda(), labels.cuda())
    assert device.device.type == "cuda" and got[2].is_cuda
    for a, b in zip(want, got):
        torch.testing.assert_close(a, b.cpu())
