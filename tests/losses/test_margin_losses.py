"""softmax, CosFace, ArcFace and the combined margin: against pytorch-metric-learning, hand-computed
2-D cases at known angles, edge cases, gradcheck and parameter validation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml
from torch.func import functional_call

import mlcompare.losses as L
from tests.losses.margin_cases import angles_atan2, ce_from_logits, features_2d, weights_2d

C, D, B = 7, 5, 12


def _batch(seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=dtype) * 3
    y = torch.randint(0, C, (B,), generator=g)
    return x, y


def _ours(name, **params):
    torch.manual_seed(1)
    loss = L.get(name, num_classes=C, embedding_dim=D, **params).double()
    with torch.no_grad():  # weights of the same scale as the features, so angles spread over [0, pi]
        loss.weight.normal_()
    return loss


def _grads(loss_fn, x, weight, y, **kw):
    x = x.clone().requires_grad_(True)
    value = loss_fn(x, y, **kw)
    value.backward()
    return value.detach(), x.grad, weight.grad


@pytest.mark.parametrize("s,m", [(30.0, 0.35), (64.0, 0.2), (10.0, 0.0)])
def test_cosface_matches_pml(s, m):
    ours = _ours("cosface", s=s, m=m)
    ref = pml.CosFaceLoss(num_classes=C, embedding_size=D, margin=m, scale=s).double()
    ref.W.data = ours.weight.detach().t().clone()
    x, y = _batch()
    v1, gx1, gw1 = _grads(ours, x, ours.weight, y)
    v2, gx2, gw2 = _grads(ref, x, ref.W, y)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx1, gx2, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(gw1, gw2.t(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("s,m,seed", [(64.0, 0.5, 0), (30.0, 0.3, 1), (16.0, 1.2, 2)])
def test_arcface_matches_pml(s, m, seed):
    ours = _ours("arcface", s=s, m=m)
    ref = pml.ArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(m), scale=s).double()
    ref.W.data = ours.weight.detach().t().clone()
    x, y = _batch(seed)
    cos_t = F.normalize(x, dim=1).mul(F.normalize(ours.weight.detach(), dim=1)[y]).sum(1)
    if m > 1:  # the case must exercise the fall-back branch theta + m > pi
        assert (torch.acos(cos_t) + m > math.pi).any()
    v1, gx1, gw1 = _grads(ours, x, ours.weight, y)
    v2, gx2, gw2 = _grads(ref, x, ref.W, y)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gx1, gx2, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(gw1, gw2.t(), rtol=1e-7, atol=1e-9)


def test_softmax_matches_cross_entropy_by_hand():
    torch.manual_seed(0)
    loss = L.get("softmax", num_classes=C, embedding_dim=D, bias=True).double()
    with torch.no_grad():
        loss.bias.normal_()
    x, y = _batch()
    x.requires_grad_(True)
    value = loss(x, y)
    expected = ce_from_logits(x @ loss.weight.t() + loss.bias, y)
    torch.testing.assert_close(value, expected, rtol=1e-12, atol=1e-12)
    gx, gw, gb = torch.autograd.grad(value, (x, loss.weight, loss.bias))
    ex, ew, eb = torch.autograd.grad(expected, (x, loss.weight, loss.bias))
    for a, b in ((gx, ex), (gw, ew), (gb, eb)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert L.get("softmax", num_classes=C, embedding_dim=D).bias is None


def _written(name, x, w, y, **p):
    """Each loss's formula from atan2 angles: the paper's equation, written independently."""
    theta = angles_atan2(x, w)
    cos = torch.cos(theta)
    t = theta.gather(1, y[:, None]).squeeze(1)
    if name == "cosface":
        target = torch.cos(t) - p["m"]
    elif name == "arcface":
        m = p["m"]
        target = torch.where(t + m <= math.pi, torch.cos(t + m), torch.cos(t) - m * math.sin(m))
    elif name == "combined":
        m1, m2, m3 = p["m1"], p["m2"], p["m3"]
        if m1 == 1:
            arc = torch.where(t + m2 <= math.pi, torch.cos(t + m2), torch.cos(t) - m2 * math.sin(m2))
        else:
            phi = m1 * t + m2
            k = torch.floor(phi.detach() / math.pi)
            arc = (-1.0) ** k * torch.cos(phi) - 2 * k
        target = arc - m3
    logits = cos.scatter(1, y[:, None], target[:, None]) * p["s"]
    return ce_from_logits(logits, y)


CASES = [
    ("cosface", dict(s=30.0, m=0.35)),
    ("arcface", dict(s=64.0, m=0.5)),
    ("arcface", dict(s=8.0, m=1.0)),
    ("combined", dict(s=64.0, m1=1.0, m2=0.3, m3=0.2)),
    ("combined", dict(s=4.0, m1=3.0, m2=0.0, m3=0.0)),
    ("combined", dict(s=4.0, m1=2.0, m2=0.2, m3=0.1)),
]
# target angles (to class 0) from 0.1 rad to pi - 0.05: crosses every branch point
ALPHAS = (0.1, -0.7, 1.2, 2.0, -2.5, math.pi - 0.05, 0.9)


@pytest.mark.parametrize("name,params", CASES)
def test_known_angles_2d_loss_and_gradient(name, params):
    loss = L.get(name, num_classes=3, embedding_dim=2, **params).double()
    w = weights_2d((1.0, 2.0, 0.5))  # weight norms must not matter
    with torch.no_grad():
        loss.weight.copy_(w)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1])
    x = features_2d(ALPHAS, norm=3.0).requires_grad_(True)
    value = loss(x, y)
    w_leaf = w.clone().requires_grad_(True)
    expected = _written(name, x, w_leaf, y, **params)
    torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-9)
    # gradients through the margin: equal to autograd of the written formula
    got = torch.autograd.grad(value, (x, loss.weight))
    want = torch.autograd.grad(expected, (x, w_leaf))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    # the logged stats are the known angles
    t = torch.tensor([abs(a) for a in ALPHAS[:6]] + [abs(0.9 - 2 * math.pi / 3)], dtype=torch.float64)
    torch.testing.assert_close(loss.stats["theta_target"], t.mean(), rtol=1e-6, atol=1e-6)
    assert not loss.stats["theta_target"].requires_grad


def test_arcface_edge_cases_by_hand():
    s, m = 10.0, 0.5
    loss = L.get("arcface", num_classes=3, embedding_dim=2, s=s, m=m).double()
    with torch.no_grad():
        loss.weight.copy_(weights_2d())
    y = torch.zeros(1, dtype=torch.long)

    def expected(target, others):
        return -math.log(math.exp(s * target) / (math.exp(s * target) + sum(math.exp(s * o) for o in others)))

    cases = {
        0.0: (math.cos(m), [math.cos(2 * math.pi / 3)] * 2),  # theta = 0: cos(0 + m)
        math.pi: (-1 - m * math.sin(m), [math.cos(math.pi / 3)] * 2),  # theta = pi: fall-back
        math.pi - 0.3: (math.cos(math.pi - 0.3) - m * math.sin(m), [math.cos(math.pi / 3 - 0.3), math.cos(math.pi / 3 + 0.3)]),
    }
    for alpha, (target, others) in cases.items():
        x = features_2d([alpha]).requires_grad_(True)
        value = loss(x, y)
        assert value.item() == pytest.approx(expected(target, others), rel=1e-6)
        value.backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(loss.weight.grad).all()
        loss.weight.grad = None
    # zero-norm feature: every cosine is 0 (theta = pi/2), finite gradient
    x = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    value = loss(x, y)
    assert value.item() == pytest.approx(expected(math.cos(math.pi / 2 + m), [0.0, 0.0]), rel=1e-9)
    value.backward()
    assert torch.isfinite(x.grad).all()


def test_arcface_easy_margin():
    s, m = 10.0, 0.5
    loss = L.get("arcface", num_classes=3, embedding_dim=2, s=s, m=m, easy_margin=True).double()
    with torch.no_grad():
        loss.weight.copy_(weights_2d())
    y = torch.zeros(2, dtype=torch.long)
    x = features_2d([0.4, 2.0])  # cos > 0: margin; cos < 0: plain cosine
    theta = angles_atan2(x, weights_2d())
    logits = torch.cos(theta)
    logits[0, 0] = math.cos(0.4 + m)
    torch.testing.assert_close(loss(x, y), ce_from_logits(s * logits, y))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_arcface_finite_at_cos_plus_minus_one(dtype):
    loss = L.get("arcface", num_classes=3, embedding_dim=2).to(dtype)
    with torch.no_grad():
        loss.weight.copy_(weights_2d())
    x = torch.tensor([[2.0, 0.0], [-2.0, 0.0]], dtype=dtype, requires_grad=True)  # cos = +1, cos = -1
    value = loss(x, torch.zeros(2, dtype=torch.long))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all() and torch.isfinite(loss.weight.grad).all()
    # the value is exact at theta = 0 (no clamp moving it to theta = 5e-4 in float32)
    from mlcompare.losses.margins import additive_angular

    got = additive_angular(torch.tensor([1.0, -1.0], dtype=dtype), 0.5)
    torch.testing.assert_close(got, torch.tensor([math.cos(0.5), -1 - 0.5 * math.sin(0.5)], dtype=dtype), rtol=0, atol=1e-7)


@pytest.mark.parametrize("name,params", CASES + [("softmax", {})])
def test_gradcheck_float64(name, params):
    loss = L.get(name, num_classes=4, embedding_dim=3, **params).double()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 1])
    assert torch.autograd.gradcheck(lambda x, w: functional_call(loss, {"weight": w}, (x, y)), (x, w))


def _loss_on(name, x, w, y, **params):
    loss = L.get(name, num_classes=w.shape[0], embedding_dim=w.shape[1], **params).double()
    return functional_call(loss, {"weight": w}, (x, y))


@pytest.mark.parametrize("seed", [0, 1])
def test_combined_special_cases(seed):
    x, y = _batch(seed)
    w = torch.randn(C, D, dtype=torch.float64, generator=torch.Generator().manual_seed(seed + 10))
    pairs = [
        (("arcface", dict(s=64.0, m=0.5)), dict(s=64.0, m1=1.0, m2=0.5, m3=0.0)),
        (("arcface", dict(s=32.0, m=1.3)), dict(s=32.0, m1=1.0, m2=1.3, m3=0.0)),  # fall-back branch used
        (("arcface", dict(s=32.0, m=0.5, easy_margin=True)), dict(s=32.0, m1=1.0, m2=0.5, m3=0.0, easy_margin=True)),
        (("cosface", dict(s=30.0, m=0.35)), dict(s=30.0, m1=1.0, m2=0.0, m3=0.35)),
    ]
    for (name, params), combined in pairs:
        xs = x.clone().requires_grad_(True)
        a = _loss_on(name, xs, w, y, **params)
        b = _loss_on("combined", xs, w, y, **combined)
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(a, xs)[0], torch.autograd.grad(b, xs)[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,params,message", [
    ("arcface", dict(m=0.0), "m (ArcFace"),
    ("arcface", dict(m=math.pi / 2), "m (ArcFace"),
    ("arcface", dict(s=0.0), "s must be"),
    ("cosface", dict(m=-0.1), "m (CosFace"),
    ("cosface", dict(m=1.0), "m (CosFace"),
    ("combined", dict(m1=0.5), "m1"),
    ("combined", dict(m2=-0.1), "m2"),
    ("combined", dict(m2=2.0), "m2"),
    ("combined", dict(m3=1.5), "m3"),
    ("combined", dict(m1=2.0, easy_margin=True), "easy_margin"),
    ("arcface", dict(s={"kind": "bogus"}), "kind"),
    ("arcface", dict(margin=0.5), "valid parameters"),
])
def test_bad_parameters_fail_at_construction(name, params, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        L.get(name, num_classes=C, embedding_dim=D, **params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["softmax", "cosface", "arcface", "combined"])
def test_fewer_than_two_classes_and_unknown_name(name):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        L.get(name, num_classes=1, embedding_dim=D)
    with pytest.raises(ValueError, match="unknown loss 'arcfaec'; valid losses: .*arcface"):
        L.get("arcfaec", num_classes=C, embedding_dim=D)


def test_wrong_shapes_raise():
    loss = L.get("arcface", num_classes=C, embedding_dim=D)
    with pytest.raises(ValueError, match=r"embeddings must have shape \[batch, 5\]"):
        loss(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must have shape"):
        loss(torch.randn(4, D), torch.zeros(3, dtype=torch.long))


def test_weights_seeded_by_caller_and_trainable():
    torch.manual_seed(5)
    a = L.get("arcface", num_classes=C, embedding_dim=D)
    torch.manual_seed(5)
    b = L.get("arcface", num_classes=C, embedding_dim=D)
    torch.testing.assert_close(a.weight, b.weight)
    assert a.weight.shape == (C, D) and a.family == "classification"
    assert [n for n, _ in a.named_parameters()] == ["weight"]


def test_autocast_half_precision_is_computed_in_float32():
    loss = L.get("arcface", num_classes=C, embedding_dim=D)
    x, y = _batch(dtype=torch.float32)
    ref = loss(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x.bfloat16(), y)
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, ref, rtol=0.05, atol=0.5)
