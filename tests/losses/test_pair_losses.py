"""Pair and triplet losses against pytorch-metric-learning on the same inputs: values and gradients."""
from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners
from pytorch_metric_learning.distances import LpDistance

import miners
from mlcompare import losses


def batch(seed: int, b: int = 32, d: int = 8, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=torch.float64), torch.randint(0, classes, (b,), generator=g)


def value_and_grad(loss_fn, emb: torch.Tensor, *args) -> tuple[float, torch.Tensor]:
    x = emb.clone().requires_grad_(True)
    value = loss_fn(x, *args)
    (grad,) = torch.autograd.grad(value, x)
    return value.item(), grad


def assert_same(ours, ref) -> None:
    assert ours[0] == pytest.approx(ref[0], rel=1e-6, abs=1e-9)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("margin", [0.05, 0.2])
def test_triplet_all_triplets_matches_pml(seed: int, margin: float) -> None:
    emb, labels = batch(seed)
    ours = losses.get("triplet", num_classes=5, embedding_dim=8, margin=margin)
    ref = pml_losses.TripletMarginLoss(margin=margin)
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref, emb, labels))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_triplet_batch_hard_matches_pml(seed: int) -> None:
    emb, labels = batch(seed)
    ours = losses.get("triplet", num_classes=5, embedding_dim=8, margin=0.2, miner=miners.BatchHardMiner())
    ref = pml_losses.TripletMarginLoss(margin=0.2)
    ref_fn = lambda x, y: ref(x, y, pml_miners.BatchHardMiner()(x, y))  # noqa: E731
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref_fn, emb, labels))


def test_triplet_reduction_all_and_squared_by_hand() -> None:
    emb, labels = batch(4, b=10, d=3, classes=3)
    loss = losses.get("triplet", num_classes=3, embedding_dim=3, margin=0.3, squared=True, reduction="all")
    x = torch.nn.functional.normalize(emb, dim=1)
    terms = []
    for a in range(10):
        for p in range(10):
            for n in range(10):
                if p != a and labels[p] == labels[a] and labels[n] != labels[a]:
                    d_ap = ((x[a] - x[p]) ** 2).sum()
                    d_an = ((x[a] - x[n]) ** 2).sum()
                    terms.append(max(0.0, float(d_ap - d_an + 0.3)))
    assert loss(emb, labels).item() == pytest.approx(sum(terms) / len(terms), rel=1e-9)
    assert loss.stats["n_mined"].item() == len(terms)
    assert loss.stats["active_fraction"].item() == pytest.approx(sum(t > 0 for t in terms) / len(terms))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("pos_margin,neg_margin", [(0.0, 1.0), (0.25, 1.2)])
def test_contrastive_matches_pml(seed: int, pos_margin: float, neg_margin: float) -> None:
    emb, labels = batch(seed)
    ours = losses.get("contrastive", num_classes=5, embedding_dim=8, pos_margin=pos_margin, neg_margin=neg_margin)
    ref = pml_losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin)
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref, emb, labels))


def test_contrastive_with_pair_margin_miner_matches_pml() -> None:
    emb, labels = batch(5)
    ours = losses.get("contrastive", num_classes=5, embedding_dim=8, miner=losses.build_miner("pair", {"pos_margin": 0.2, "neg_margin": 0.8}, embedding_dim=8))
    ref = pml_losses.ContrastiveLoss()
    ref_fn = lambda x, y: ref(x, y, pml_miners.PairMarginMiner(pos_margin=0.2, neg_margin=0.8)(x, y))  # noqa: E731
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref_fn, emb, labels))


def test_contrastive_squared_unnormalised_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.4], [1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    loss = losses.get("contrastive", num_classes=2, embedding_dim=2, neg_margin=1.5, squared=True, normalize=False, reduction="all")
    # positive pairs (0,1),(1,0): d = 0.5; negative pairs (0,2),(2,0): d = 1; (1,2),(2,1): d = sqrt(0.65)
    pos = 0.5**2
    neg = ((1.5 - 1.0) ** 2 * 2 + (1.5 - 0.65**0.5) ** 2 * 2) / 4
    assert loss(emb, labels).item() == pytest.approx(pos + neg, rel=1e-12)


@pytest.mark.parametrize("name,miner", [("triplet", None), ("contrastive", miners.PairMiner(neg_margin=0.0))])
def test_empty_mining_gives_zero_with_gradient(name: str, miner) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    loss = losses.get(name, num_classes=4, embedding_dim=3, miner=miner)
    value = loss(x, torch.arange(4))  # all labels distinct: no positive pair, hence no triplet
    value.backward()
    assert value.item() == 0.0 and x.grad is not None and torch.all(x.grad == 0)
    assert loss.stats["n_mined"].item() == 0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="reduction"):
        losses.get("triplet", num_classes=2, embedding_dim=2, reduction="sum")
    with pytest.raises(ValueError, match="margin"):
        losses.get("triplet", num_classes=2, embedding_dim=2, margin=-1.0)
    with pytest.raises(ValueError, match="neg_margin"):
        losses.get("contrastive", num_classes=2, embedding_dim=2, pos_margin=0.5, neg_margin=0.2)
    with pytest.raises(ValueError, match="miner must be a miner object"):
        losses.get("triplet", num_classes=2, embedding_dim=2, miner="hardest")
    with pytest.raises(ValueError, match="unknown miner 'hardest'; valid miners: batch_all"):
        losses.build_miner("hardest", {}, embedding_dim=2)


def test_family_is_pair() -> None:
    assert losses.family("triplet") == losses.family("contrastive") == "pair"
    assert LpDistance  # pml's distance is the reference: Euclidean on normalised embeddings


@pytest.mark.parametrize("margin", [0.0, 0.1])
@pytest.mark.parametrize("use_batch_hard", [False, True])
def test_soft_margin_triplet_matches_pml_smooth_loss(margin: float, use_batch_hard: bool) -> None:
    emb, labels = batch(6)
    miner = miners.BatchHardMiner() if use_batch_hard else None
    ours = losses.get("triplet_soft", num_classes=5, embedding_dim=8, margin=margin, miner=miner)
    ref = pml_losses.TripletMarginLoss(margin=margin, smooth_loss=True)
    ref_fn = lambda x, y: ref(x, y, pml_miners.BatchHardMiner()(x, y) if use_batch_hard else None)  # noqa: E731
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref_fn, emb, labels))
    assert ours.stats["active_fraction"].item() == 1.0
    assert 0.0 < ours.stats["hinge_active_fraction"].item() <= 1.0


@pytest.mark.parametrize("beta_per_class", [False, True])
@pytest.mark.parametrize("nu", [0.0, 0.05])
def test_margin_loss_matches_pml(beta_per_class: bool, nu: float) -> None:
    emb, labels = batch(7)
    ours = losses.get("margin", num_classes=5, embedding_dim=8, alpha=0.2, beta=1.1, nu=nu,
                      beta_per_class=beta_per_class, miner=miners.BatchAllMiner())
    ref = pml_losses.MarginLoss(margin=0.2, beta=1.1, nu=nu, learn_beta=True, num_classes=5 if beta_per_class else None)
    ref.beta.data = ref.beta.data.double()
    x1, x2 = emb.clone().requires_grad_(True), emb.clone().requires_grad_(True)
    v1, v2 = ours(x1, labels), ref(x2, labels)
    assert v1.item() == pytest.approx(v2.item(), rel=1e-9)
    g1 = torch.autograd.grad(v1, [x1, ours.beta])
    g2 = torch.autograd.grad(v2, [x2, ref.beta])
    torch.testing.assert_close(g1[0], g2[0])
    torch.testing.assert_close(g1[1].double(), g2[1].double(), rtol=1e-5, atol=1e-7)  # our beta is float32


def test_margin_loss_with_distance_weighted_default_and_hand_case() -> None:
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    loss = losses.get("margin", num_classes=2, embedding_dim=2, alpha=0.2, beta=1.0, beta_per_class=False,
                      miner=lambda e, y: (torch.tensor([0]), torch.tensor([1]), torch.tensor([2])))
    d_ap, d_an = (0.4**2 + 0.8**2) ** 0.5, 2**0.5
    pos, neg = max(0.0, 0.2 + d_ap - 1.0), max(0.0, 0.2 - (d_an - 1.0))
    assert loss(emb, labels).item() == pytest.approx((pos + neg) / ((pos > 0) + (neg > 0)), rel=1e-12)
    default = losses.get("margin", num_classes=5, embedding_dim=8)
    assert isinstance(default.miner, miners.DistanceWeightedMiner)
    e, y = batch(8)
    value = default(e.requires_grad_(True), y)
    value.backward()
    assert default.beta.grad is not None and default.stats["n_mined"].item() > 0


@pytest.mark.parametrize("name", ["triplet_soft", "margin"])
def test_empty_mining_zero_for_other_losses(name: str) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    loss = losses.get(name, num_classes=4, embedding_dim=3)
    value = loss(x, torch.arange(4))
    value.backward()
    assert value.item() == 0.0 and torch.all(x.grad == 0)


def test_pair_miner_output_accepted_by_triplet_loss() -> None:
    emb, labels = batch(9, b=12, d=4, classes=3)
    ours = losses.get("triplet", num_classes=3, embedding_dim=4, miner=miners.PairMiner())
    ref = pml_losses.TripletMarginLoss(margin=0.2)
    ref_fn = lambda x, y: ref(x, y, pml_miners.PairMarginMiner(pos_margin=0.0, neg_margin=10.0)(x, y))  # noqa: E731
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref_fn, emb, labels))
    # pairs that form no triplet (positives only): zero loss, not NaN
    only_pos = lambda e, y: (torch.tensor([0]), torch.tensor([1]), torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long))  # noqa: E731
    empty = losses.get("triplet", num_classes=3, embedding_dim=4, miner=only_pos)
    assert empty(emb, labels).item() == 0.0 and empty.stats["active_fraction"].item() == 0.0


def test_every_miner_by_name_trains_a_triplet_loss() -> None:
    """What a comparison TOML does: loss and miner by name, one backward step each."""
    emb, labels = batch(10, b=24, d=8, classes=4)
    for name in sorted(miners.REGISTRY):
        for loss_name in ("triplet", "triplet_soft", "margin", "contrastive"):
            loss = losses.get(loss_name, num_classes=4, embedding_dim=8,
                              miner=losses.build_miner(name, {}, embedding_dim=8))
            x = emb.clone().requires_grad_(True)
            value = loss(x, labels)
            value.backward()
            assert torch.isfinite(value) and torch.isfinite(x.grad).all(), (loss_name, name)
            assert set(loss.stats) >= {"active_fraction", "n_mined"} and loss.stats["n_mined"].item() > 0


def test_contrastive_with_triplet_miner_matches_pml() -> None:
    emb, labels = batch(11)
    ours = losses.get("contrastive", num_classes=5, embedding_dim=8, miner=miners.BatchHardMiner())
    ref = pml_losses.ContrastiveLoss()
    ref_fn = lambda x, y: ref(x, y, pml_miners.BatchHardMiner()(x, y))  # noqa: E731
    assert_same(value_and_grad(ours, emb, labels), value_and_grad(ref_fn, emb, labels))
