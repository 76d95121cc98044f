"""Scale schedules (fixed, learnable, heated-up) and their use by any normalised loss."""
from __future__ import annotations

import math

import pytest
import torch
from torch.func import functional_call

import mlcompare.losses as L
from mlcompare.losses.scale import FixedScale, HeatedUpScale, LearnableScale, make_scale


def test_fixed_scale():
    s = make_scale(30)
    assert isinstance(s, FixedScale) and s().item() == 30.0
    s.set_progress(5, 10)
    assert s().item() == 30.0


def test_heated_up_scale_values():
    s = make_scale({"kind": "heated_up", "start": 10.0, "end": 50.0, "warmup": 0.5})
    assert isinstance(s, HeatedUpScale)
    got = []
    for step in (0, 25, 50, 100):
        s.set_progress(step, 100)
        got.append(s().item())
    assert got == pytest.approx([10.0, 30.0, 50.0, 50.0])
    down = HeatedUpScale(start=64.0, end=16.0)
    down.set_progress(3, 4)
    assert down().item() == pytest.approx(28.0)


def test_learnable_scale_is_a_trained_parameter():
    loss = L.get("normface", num_classes=3, embedding_dim=2, s={"kind": "learnable", "init": 4.0})
    scale = loss.margin_logits.scale  # the margin's, as insightface's CombinedMarginLoss holds s
    assert isinstance(scale, LearnableScale)
    assert "margin_logits.scale.log_s" in dict(loss.named_parameters())
    assert scale().item() == pytest.approx(4.0)
    x, y = torch.randn(6, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    loss(x, y).backward()
    assert scale.log_s.grad is not None and scale.log_s.grad.item() != 0.0
    assert loss.stats["s"].item() == pytest.approx(4.0)


@pytest.mark.parametrize("name", ["normface", "cosface", "arcface", "combined", "subcenter_arcface", "magface",
                                  "circle", "sphereface", "l2softmax"])
def test_schedule_drives_any_normalised_loss(name):
    key = {"circle": "gamma", "l2softmax": "alpha"}.get(name, "s")
    extra = {"sphereface": {"lambda_base": 0.0}}.get(name, {})
    sched = L.get(name, num_classes=4, embedding_dim=3, **{key: {"kind": "heated_up", "start": 2.0, "end": 10.0}},
                  **extra).double()
    fixed = L.get(name, num_classes=4, embedding_dim=3, **{key: 6.0}, **extra).double()
    sched.set_progress(1, 2)  # halfway: s = 6
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 10
    y = torch.tensor([0, 1, 2, 3, 0])
    w = sched.weight.detach().clone()
    torch.testing.assert_close(functional_call(sched, {"weight": w}, (x, y)), functional_call(fixed, {"weight": w}, (x, y)))


@pytest.mark.parametrize("spec,message", [
    (0.0, "s must be a finite number > 0"),
    (-3, "s must be a finite number > 0"),
    (math.nan, "finite"),
    (True, "s must be a number"),
    ("64", "s must be a number"),
    ({"start": 1.0}, "needs 'kind'"),
    ({"kind": "heated_up", "warmup": 0.0}, "warmup"),
    ({"kind": "heated_up", "start": 0.0}, "start must be"),
    ({"kind": "learnable", "init": -1.0}, "init must be"),
])
def test_bad_scale_specs(spec, message):
    with pytest.raises(ValueError, match=message) as info:
        make_scale(spec)
    assert "\n" not in str(info.value)
