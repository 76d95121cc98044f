"""RandomTripletMiner and DistanceWeightedMiner: validity, the closed-form density, a chi-square test."""
from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from miners import DistanceWeightedMiner, RandomTripletMiner
from miners.distance_weighted import log_inverse_density
from miners.distances import distance_matrix
from tests.miners.conftest import random_batch


def test_random_triplets_are_valid_and_cover_every_pair() -> None:
    emb, labels = random_batch(30, 4, 5, 0)
    a, p, n = RandomTripletMiner(seed=0)(emb, labels)
    pos = {(i, j) for i in range(30) for j in range(30) if i != j and labels[i] == labels[j]}
    assert set(zip(a.tolist(), p.tolist())) == pos and len(a) == len(pos)
    assert bool((labels[n] != labels[a]).all())
    again = RandomTripletMiner(seed=0)(emb, labels)
    assert torch.equal(again[2], n)


def test_random_negatives_are_uniform() -> None:
    labels = torch.tensor([0, 0] + [1, 2, 3, 4])
    miner = RandomTripletMiner(seed=1)
    counts = torch.zeros(6)
    for _ in range(400):
        a, _, n = miner(torch.randn(6, 3), labels)
        counts += torch.bincount(n[a == 0], minlength=6)
    assert stats.chisquare(counts[2:].numpy()).pvalue > 0.001


def test_log_density_closed_form_hand_case() -> None:
    # n = 4: q(d)^-1 ∝ d^-2 (1 - d^2/4)^-1/2; at d = 1: 1 / sqrt(3/4); at d = sqrt(2): 1/2 / sqrt(1/2)
    d = torch.tensor([1.0, math.sqrt(2.0)], dtype=torch.float64)
    w = torch.exp(log_inverse_density(d, 4))
    assert w[0].item() == pytest.approx(1 / math.sqrt(0.75), rel=1e-12)
    assert w[1].item() == pytest.approx(0.5 / math.sqrt(0.5), rel=1e-12)


def test_density_is_that_of_the_sphere() -> None:
    # distances between uniform points on S^{n-1} follow q(d) ∝ exp(-log q^-1); compare histograms
    g = torch.Generator().manual_seed(0)
    n = 16
    x = torch.nn.functional.normalize(torch.randn(4000, n, generator=g, dtype=torch.float64), dim=1)
    y = torch.nn.functional.normalize(torch.randn(4000, n, generator=g, dtype=torch.float64), dim=1)
    d = (x - y).norm(dim=1)
    edges = torch.linspace(0.0, 2.0, 41, dtype=torch.float64)
    h = 2.0 / 200000
    centres = torch.arange(200000, dtype=torch.float64) * h + h / 2
    log_q = -log_inverse_density(centres, n)
    mass = torch.exp(log_q - log_q.max())
    bin_of = torch.bucketize(centres, edges, right=True) - 1
    probs = torch.zeros(40, dtype=torch.float64).index_add_(0, bin_of, mass)
    probs = probs / probs.sum()
    observed = torch.histogram(d, bins=edges)[0]
    expected = probs * len(d)
    keep = expected > 5  # pool the sparse tails into one bin
    obs = torch.cat([observed[keep], observed[~keep].sum().view(1)])
    exp = torch.cat([expected[keep], expected[~keep].sum().view(1)])
    assert int(keep.sum()) >= 8
    assert stats.chisquare(obs.numpy(), exp.numpy()).pvalue > 0.001
    # and a wrong dimension is rejected by the same test
    wrong = -log_inverse_density(centres, n + 8)
    wrong_probs = torch.zeros(40, dtype=torch.float64).index_add_(0, bin_of, torch.exp(wrong - wrong.max()))
    wrong_exp = wrong_probs / wrong_probs.sum() * len(d)
    exp_w = torch.cat([wrong_exp[keep], wrong_exp[~keep].sum().view(1)])
    assert stats.chisquare(obs.numpy(), exp_w.numpy()).pvalue < 1e-6


def test_weights_follow_formula_and_cutoffs() -> None:
    emb, labels = random_batch(24, 8, 4, 2)
    miner = DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=1.4)
    probs = miner.negative_probabilities(emb.double(), labels)
    dist = distance_matrix(emb.double())
    for a in range(24):
        allowed = [j for j in range(24) if labels[j] != labels[a] and dist[a, j] < 1.4]
        raw = torch.tensor([math.exp(log_inverse_density(dist[a, j].clamp_min(0.5), 8).item()) for j in allowed], dtype=torch.float64)
        if allowed:
            torch.testing.assert_close(probs[a, allowed], raw / raw.sum())
        assert probs[a].sum().item() == pytest.approx(1.0 if allowed else 0.0)
        others = [j for j in range(24) if j not in allowed]
        assert bool((probs[a, others] == 0).all())


def test_large_dimension_does_not_overflow() -> None:
    emb, labels = random_batch(32, 512, 4, 3)
    probs = DistanceWeightedMiner().negative_probabilities(emb, labels)
    assert bool(torch.isfinite(probs).all())
    assert bool(((probs.sum(1) - 1).abs() < 1e-4).any())


def test_sampled_negatives_follow_weights_chi_square() -> None:
    emb, labels = random_batch(16, 4, 4, 4)
    miner = DistanceWeightedMiner(cutoff=0.3, nonzero_loss_cutoff=2.0, seed=123)
    probs = miner.negative_probabilities(emb, labels)
    anchor = 0
    counts = torch.zeros(16)
    for _ in range(300):
        a, _, n = miner(emb, labels)
        counts += torch.bincount(n[a == anchor], minlength=16).float()
    support = probs[anchor] > 0
    assert bool((counts[~support] == 0).all())
    p = probs[anchor, support].double()
    observed = counts[support].double()
    expected = p / p.sum() * observed.sum()
    assert stats.chisquare(observed.numpy(), expected.numpy()).pvalue > 0.001
    # the same counts are far from uniform sampling over the same negatives
    uniform = torch.full_like(expected, observed.sum().item() / len(expected))
    assert stats.chisquare(observed.numpy(), uniform.numpy()).pvalue < 1e-6


def test_bad_cutoffs() -> None:
    with pytest.raises(ValueError, match="nonzero_loss_cutoff"):
        DistanceWeightedMiner(cutoff=0.5, nonzero_loss_cutoff=0.4)
    with pytest.raises(ValueError, match="cutoff"):
        DistanceWeightedMiner(cutoff=0.0)
