"""Adding a margin is one class and one registry line: it then trains as a loss and through Partial FC.

The margin here (a halved cosine margin, ``cos theta_y - m/2``) is defined in this file only; its
loss is checked against the cross-entropy written out by hand, and Partial FC with it (one rank,
every class) against that loss, value and gradients.
"""
from __future__ import annotations

import pytest
import torch

import mlcompare.losses as L
from mlcompare.backbones import ResNetFace
from mlcompare.config.comparison import TrainConfig
from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.train.trainer import train
from tests.losses.margin_cases import ce_from_logits
from tests.trainer.test_trainer import tiny_data


class HalfCosFace(TargetMargin):
    """``cos theta_y - m / 2`` (a test margin; Nobody et al. 2099)."""

    shown_params = ("s", "m")
    search_space = {"s": Dim(8.0, 32.0, log=True), "m": Dim(0.1, 0.6)}

    def __init__(self, *, s: float = 16.0, m: float = 0.4) -> None:
        super().__init__(s=s)
        if not 0 <= m < 2:
            raise ValueError(f"m (half-cosine margin) must be in [0, 2), got {m!r}")
        self.m = float(m)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target - self.m / 2


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(L.REGISTRY, "half_cosface", HalfCosFace)  # the one registry line


def test_the_new_margin_is_a_loss_with_its_formula(registered):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.arange(8) % 4
    loss = L.get("half_cosface", num_classes=4, embedding_dim=5, m=0.5).double()
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(loss.weight.detach(), dim=1).T
    expected = ce_from_logits(16.0 * (cos - 0.25 * torch.nn.functional.one_hot(y, 4)), y)
    torch.testing.assert_close(loss(x, y), expected, rtol=1e-12, atol=1e-12)
    assert L.family("half_cosface") == "classification" and L.parameters("half_cosface") == ["s", "m"]
    assert L.with_shown("half_cosface", {}) == {"s": 16.0, "m": 0.4}
    with pytest.raises(ValueError, match=r"m \(half-cosine margin\) must be in \[0, 2\)"):
        L.get("half_cosface", num_classes=4, embedding_dim=5, m=3.0)


def test_partial_fc_takes_the_new_margin_and_equals_its_loss(registered):
    assert "half_cosface" in L.margins() and "m" in L.parameters("partial_fc")
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 5, generator=g, dtype=torch.float64), torch.randint(0, 7, (9,), generator=g)
    direct = L.get("half_cosface", num_classes=7, embedding_dim=5, s=8.0, m=0.3).double()
    sharded = L.get("partial_fc", num_classes=7, embedding_dim=5, margin="half_cosface", s=8.0, m=0.3).double()
    with torch.no_grad():
        sharded.weight.copy_(direct.weight)
    results = []
    for loss in (direct, sharded):
        xg = x.clone().requires_grad_(True)
        value = loss(xg, y)
        results.append((value, *torch.autograd.grad(value, (xg, loss.weight))))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="h is not a parameter of margin='half_cosface'; it takes m"):
        L.get("partial_fc", num_classes=7, embedding_dim=5, margin="half_cosface", h=0.1)


@pytest.mark.parametrize("name, params, s", [("half_cosface", {}, 16.0),  # Partial FC's s is 64 for every margin
                                             ("partial_fc", {"margin": "half_cosface", "sample_rate": 0.5}, 64.0)])
def test_the_new_margin_trains(registered, name, params, s):
    data = tiny_data()
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = L.get(name, num_classes=data.num_identities, embedding_dim=16, **params)
    before = loss.weight.detach().clone()
    cfg = TrainConfig(steps=3, p=4, k=3, lr=1e-2, warmup_steps=1, log_every=1, checkpoint_every=10)
    result = train(model, loss, data, cfg, seed=0, device=torch.device("cpu"))
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history)
    assert not torch.equal(before, loss.weight.detach())
    assert all(h["s"] == s for h in result.history)  # the margin's scale, logged as every margin's
