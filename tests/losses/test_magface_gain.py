"""MagFace's norm gain: the formula with a = k |x|, and a tiny run where the margin spreads."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare import losses as L


def _written(x, w, y, *, k, s, l_a, u_a, l_m, u_m, lambda_g):
    """MagFace written out by hand with a = k |x| (ArcFace fall-back past pi)."""
    cos = F.normalize(x, dim=1) @ F.normalize(w, dim=1).T
    t = torch.acos(cos.gather(1, y[:, None]).squeeze(1).clamp(-1, 1))
    a = (k * x.norm(dim=1)).clamp(l_a, u_a)
    m = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m
    target = torch.where(t + m <= math.pi, torch.cos(t + m), torch.cos(t) - m * torch.sin(m))
    logits = s * cos.scatter(1, y[:, None], target[:, None])
    return F.cross_entropy(logits, y) + lambda_g * (1 / a + a / u_a ** 2).mean()


def test_gain_starts_mid_range_for_batchnorm_features_and_matches_the_formula():
    torch.manual_seed(0)
    D = 128
    loss = L.get("magface", num_classes=5, embedding_dim=D).double()
    x = torch.randn(64, D, dtype=torch.float64)  # what a BatchNorm1d head gives: unit variance per dimension
    y = torch.randint(0, 5, (64,))
    value = loss(x, y)
    k = 60.0 / math.sqrt(D)
    assert loss.margin_logits.gain(D) == k
    assert 50 < loss.stats["magnitude_mean"].item() < 70  # mid [10, 110], not at sqrt(128) = 11.3
    expected = _written(x, loss.weight.detach(), y, k=k, s=64.0, l_a=10.0, u_a=110.0, l_m=0.45, u_m=0.8, lambda_g=35.0)
    torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-10)
    plain = L.get("magface", num_classes=5, embedding_dim=D, norm_gain=False).double()
    assert plain.margin_logits.gain(D) == 1.0
    torch.testing.assert_close(plain(x, y), _written(x, plain.weight.detach(), y, k=1.0, s=64.0, l_a=10.0, u_a=110.0,
                                                     l_m=0.45, u_m=0.8, lambda_g=35.0), rtol=1e-10, atol=1e-10)


def _tiny_run(norm_gain: bool, steps: int = 15) -> list[dict[str, float]]:
    """A small MLP ending in BatchNorm1d with its scale fixed at 1 (our backbones' embedding head),
    trained on clustered inputs whose per-sample noise varies (easy and hard samples)."""
    g = torch.Generator().manual_seed(0)
    classes, dim_in, dim = 10, 32, 128
    centres = torch.randn(classes, dim_in, generator=g) * 2
    torch.manual_seed(0)
    head = nn.BatchNorm1d(dim)
    head.weight.requires_grad_(False)
    model = nn.Sequential(nn.Linear(dim_in, 128), nn.ReLU(), nn.Linear(128, dim), head)
    loss = L.get("magface", num_classes=classes, embedding_dim=dim, norm_gain=norm_gain)
    opt = torch.optim.SGD([*model.parameters(), *loss.head_parameters()], lr=0.05, momentum=0.9)
    stats = []
    for _ in range(steps):
        y = torch.randint(0, classes, (128,), generator=g)
        noise = torch.rand(128, 1, generator=g) * 3  # per-sample difficulty
        x = centres[y] + noise * torch.randn(128, dim_in, generator=g)
        value = loss(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
        stats.append({k: float(v) for k, v in loss.stats.items()})
    return stats


def test_margin_spreads_over_the_batch_after_a_few_steps_with_the_gain():
    with_gain, without = _tiny_run(True), _tiny_run(False)
    last = with_gain[-1]
    # Without the gain the norms sit near sqrt(128) and the margin is l_m + tiny for all samples.
    # (measured over steps 10-30: 11.1 and 0.006 rad without the gain; 58.5 and 0.046 rad with it)
    assert 10 <= without[-1]["feature_norm_mean"] < 14 and without[-1]["margin_std"] < 0.01
    assert 20 < last["magnitude_mean"] < 100  # inside [l_a, u_a], away from the clamps
    assert last["margin_std"] > 0.03  # radians, over one batch of 128
    assert last["margin_std"] > 4 * without[-1]["margin_std"]
