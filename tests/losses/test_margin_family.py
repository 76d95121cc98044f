"""NormFace, L2-softmax, L-Softmax, SphereFace, sub-centre ArcFace, MagFace, Circle, center and ring
losses: against pytorch-metric-learning where its form matches, written formulas at known 2-D
angles (loss and gradient), edge cases, gradcheck and parameter validation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml
from torch.func import functional_call

import mlcompare.losses as L
from tests.losses.margin_cases import angles_atan2, ce_from_logits, features_2d, weights_2d

C, D, B = 6, 5, 12


def _batch(seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, D, generator=g, dtype=torch.float64) * scale
    y = torch.randint(0, C, (B,), generator=g)
    return x, y


def _ours(name, rows=C, **params):
    torch.manual_seed(1)
    loss = L.get(name, num_classes=C, embedding_dim=D, **params).double()
    with torch.no_grad():
        loss.weight.copy_(torch.randn(rows, D, dtype=torch.float64, generator=torch.Generator().manual_seed(7)))
    return loss


def _compare(ours, ref, ref_weight, x, y, call_ref=None, rtol=1e-8):
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    va = ours(xa, y)
    vb = ref(xb, y) if call_ref is None else call_ref(xb, y)
    va.backward()
    vb.backward()
    torch.testing.assert_close(va, vb, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=rtol, atol=1e-10)
    torch.testing.assert_close(ours.weight.grad, ref_weight.grad.t(), rtol=rtol, atol=1e-10)


# ---------------------------------------------------------------- pytorch-metric-learning


@pytest.mark.parametrize("s", [1.0, 20.0])
def test_normface_matches_pml_normalized_softmax(s):
    ours = _ours("normface", s=s)
    ref = pml.NormalizedSoftmaxLoss(num_classes=C, embedding_size=D, temperature=1 / s).double()
    ref.W.data = ours.weight.detach().t().clone()
    _compare(ours, ref, ref.W, *_batch())


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_lsoftmax_matches_pml_after_annealing(m):
    ours = _ours("lsoftmax", m=m, lambda_base=0.0)  # lambda = 0: the pure margin logit, as pml
    ref = pml.LargeMarginSoftmaxLoss(num_classes=C, embedding_size=D, margin=m, scale=1).double()
    ref.W.data = ours.weight.detach().t().clone()
    _compare(ours, ref, ref.W, *_batch(m, scale=0.5), rtol=1e-7)


@pytest.mark.parametrize("m", [2, 4])
def test_sphereface_matches_pml_after_annealing(m):
    ours = _ours("sphereface", m=m, lambda_base=0.0)
    ref = pml.SphereFaceLoss(num_classes=C, embedding_size=D, margin=m, scale=1).double()
    ref.W.data = ours.weight.detach().t().clone()
    _compare(ours, ref, ref.W, *_batch(m, scale=0.5), rtol=1e-7)


@pytest.mark.parametrize("K,m,s", [(3, 0.5, 64.0), (2, 0.3, 16.0)])
def test_subcenter_arcface_matches_pml(K, m, s):
    ours = _ours("subcenter_arcface", rows=C * K, K=K, m=m, s=s)
    ref = pml.SubCenterArcFaceLoss(num_classes=C, embedding_size=D, margin=math.degrees(m), scale=s,
                                   sub_centers=K).double()
    ref.W.data = ours.weight.detach().t().clone()
    x, y = _batch()
    _compare(ours, ref, ref.W, x, y, rtol=1e-7)
    # offline dropping: same outliers and dominant sub-centres as pml's get_outliers
    is_out, dominant = ours.outliers(x, y, threshold=math.radians(60))
    ref_out, ref_dom = ref.get_outliers(x, y, threshold=60)
    assert sorted(torch.nonzero(is_out).flatten().tolist()) == sorted(ref_out.tolist())
    for j in y.unique().tolist():
        torch.testing.assert_close(ref_dom[:, j], ours.weight.detach().view(C, K, D)[j, dominant[j]])


@pytest.mark.parametrize("m,gamma", [(0.25, 256.0), (0.4, 80.0)])
def test_circle_matches_pml_with_class_proxies(m, gamma):
    # pml's CircleLoss is pair-based; with the class weights as the reference set (one positive,
    # C - 1 negatives per sample) its formula is exactly the class-level form
    ours = _ours("circle", m=m, gamma=gamma)
    ref = pml.CircleLoss(m=m, gamma=gamma)
    w = ours.weight.detach().t().clone().requires_grad_(True)
    _compare(ours, None, w, *_batch(scale=1.0), rtol=1e-7,
             call_ref=lambda x, y: ref(x, y, ref_emb=w.t(), ref_labels=torch.arange(C)))


# ---------------------------------------------------------------- written formulas at known 2-D angles

ALPHAS = (0.0, 0.3, -0.7, 1.2, 2.0, -2.5, math.pi - 0.05, 0.9)
Y = torch.tensor([0, 0, 0, 0, 0, 0, 0, 1])
W_NORMS = (1.0, 2.0, 0.5)


def _psi(t, m):
    k = torch.floor(m * t.detach() / math.pi)
    return (-1.0) ** k * torch.cos(m * t) - 2 * k


def _written(name, x, w, y, p):
    theta = angles_atan2(x, w)
    t = theta.gather(1, y[:, None]).squeeze(1)
    xn = torch.sqrt((x ** 2).sum(1))
    wn = torch.sqrt((w ** 2).sum(1))
    cos = torch.cos(theta)
    if name == "normface":
        return ce_from_logits(p["s"] * cos, y)
    if name == "l2softmax":
        return ce_from_logits(p["alpha"] * cos * wn, y)
    if name in ("lsoftmax", "sphereface"):
        lam = p["lam"]
        target = (lam * torch.cos(t) + _psi(t, p["m"])) / (1 + lam)
        logits = cos.scatter(1, y[:, None], target[:, None]) * xn[:, None]
        return ce_from_logits(logits * wn if name == "lsoftmax" else logits, y)
    if name == "magface":
        a = xn.clamp(p["l_a"], p["u_a"])
        m = (p["u_m"] - p["l_m"]) / (p["u_a"] - p["l_a"]) * (a - p["l_a"]) + p["l_m"]
        target = torch.where(t + m <= math.pi, torch.cos(t + m), torch.cos(t) - m * torch.sin(m))
        logits = p["s"] * cos.scatter(1, y[:, None], target[:, None])
        return ce_from_logits(logits, y) + p["lambda_g"] * (1 / a + a / p["u_a"] ** 2).mean()
    if name == "circle":
        m, g = p["m"], p["gamma"]
        sp, sn = torch.cos(t), cos
        ap, an = (1 + m - sp.detach()).clamp_min(0), (sn.detach() + m).clamp_min(0)
        neg = g * an * (sn - m)
        pos = g * ap * (sp - (1 - m))
        mask = F.one_hot(y, 3).bool()
        return torch.log1p((torch.exp(neg).masked_fill(mask, 0).sum(1)) * torch.exp(-pos)).mean()
    raise AssertionError(name)


FORMULA_CASES = [
    ("normface", dict(s=16.0), {}),
    ("l2softmax", dict(alpha=4.0), {}),
    ("lsoftmax", dict(m=4, lambda_base=0.0), dict(lam=0.0)),
    ("lsoftmax", dict(m=3, lambda_base=10.0, lambda_gamma=1.0, lambda_power=1.0, lambda_min=0.0), dict(lam=2.0)),
    ("sphereface", dict(m=4, lambda_base=0.0), dict(lam=0.0)),
    ("sphereface", dict(m=4), dict(lam=5.0)),
    ("magface", dict(s=8.0, l_a=1.0, u_a=4.0, l_m=0.2, u_m=0.6, lambda_g=2.0, norm_gain=False), {}),
    ("circle", dict(m=0.25, gamma=8.0), {}),
]


@pytest.mark.parametrize("name,params,extra", FORMULA_CASES)
def test_known_angles_2d_loss_and_gradient(name, params, extra):
    loss = L.get(name, num_classes=3, embedding_dim=2, **params).double()
    step = {"lsoftmax": 4, "sphereface": 10_000}.get(name, 0)
    loss.set_progress(step, 20_000)  # lsoftmax: 10 / (1 + 4) = 2; sphereface: floor at lambda_min = 5
    w = weights_2d(W_NORMS)
    with torch.no_grad():
        loss.weight.copy_(w)
    norms = torch.tensor([3.0, 0.5, 2.0, 5.0, 1.5, 3.0, 2.5, 3.0], dtype=torch.float64)
    x = (features_2d(ALPHAS) * norms[:, None]).requires_grad_(True)
    w_leaf = w.clone().requires_grad_(True)
    p = {**params, **extra}
    if name == "magface":
        p["s"] = 8.0
    value = loss(x, Y)
    expected = _written(name, x, w_leaf, Y, p)
    torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(loss.stats["theta_target"], angles_atan2(x.detach(), w).gather(1, Y[:, None]).mean(),
                               rtol=1e-6, atol=1e-6)
    if name == "magface":
        torch.testing.assert_close(loss.stats["feature_norm_mean"], norms.mean())
    # alpha = 0 sits on the non-differentiable |angle| of the written formula: compare the rest
    gx, gw = torch.autograd.grad(value, (x, loss.weight))
    ex, ew = torch.autograd.grad(expected, (x, w_leaf))
    torch.testing.assert_close(gx[1:], ex[1:], rtol=1e-6, atol=1e-8)
    if name != "magface" and name != "circle":
        x0 = features_2d([0.2, 0.8, -1.9, 2.9]).requires_grad_(True)
        y0 = torch.tensor([0, 0, 0, 2])
        w0 = w.clone().requires_grad_(True)
        a = functional_call(loss, {"weight": w0}, (x0, y0))
        b = _written(name, x0, w0, y0, p)
        torch.testing.assert_close(torch.autograd.grad(a, w0)[0], torch.autograd.grad(b, w0)[0], rtol=1e-6, atol=1e-8)


def test_sphereface_with_feature_norm_is_combined_with_that_scale():
    x, y = _batch(3)
    x = F.normalize(x, dim=1) * 2.5  # all |x| = 2.5: A-Softmax's |x| scale equals a fixed s = 2.5
    w = torch.randn(C, D, dtype=torch.float64)
    for m in (2, 3, 4):
        sphere = L.get("sphereface", num_classes=C, embedding_dim=D, m=m, lambda_base=0.0).double()
        combined = L.get("combined", num_classes=C, embedding_dim=D, s=2.5, m1=float(m), m2=0.0, m3=0.0).double()
        fixed = L.get("sphereface", num_classes=C, embedding_dim=D, m=m, s=2.5, lambda_base=0.0).double()
        a = functional_call(sphere, {"weight": w}, (x, y))
        torch.testing.assert_close(a, functional_call(combined, {"weight": w}, (x, y)), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(a, functional_call(fixed, {"weight": w}, (x, y)), rtol=1e-12, atol=1e-12)


def test_lambda_annealing_schedule():
    loss = L.get("sphereface", num_classes=3, embedding_dim=2)
    values = []
    for step in (0, 100, 1000, 10_000):
        loss.set_progress(step, 10_000)
        values.append(loss.margin_logits.annealing.value)
    assert values == pytest.approx([1000.0, 1000 / 13, 1000 / 121, 5.0])
    loss(torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))
    assert loss.stats["lambda"].item() == pytest.approx(5.0)


@pytest.mark.parametrize("m", [2, 3, 4])
def test_psi_is_continuous_and_decreasing(m):
    from mlcompare.losses.margins import angular_psi

    theta = torch.linspace(0, math.pi, 2001, dtype=torch.float64)
    psi = angular_psi(torch.cos(theta), float(m))
    assert (psi.diff() < 1e-12).all() and psi.diff().abs().max() < 0.01
    assert psi[0].item() == pytest.approx(1.0) and psi[-1].item() == pytest.approx(1 - 2 * m, abs=1e-6)


def test_magface_margin_and_regulariser_by_hand():
    loss = L.get("magface", num_classes=3, embedding_dim=2)
    a = torch.tensor([5.0, 10.0, 60.0, 110.0, 200.0])
    a_clamped = a.clamp(10, 110)
    torch.testing.assert_close(loss.margin_logits.margin_of_norm(a_clamped), torch.tensor([0.45, 0.45, 0.625, 0.8, 0.8]))
    torch.testing.assert_close(loss.margin_logits.regulariser(torch.tensor([110.0])), torch.tensor([2 / 110]))


def test_subcenter_online_dropping():
    K = 2
    loss = L.get("subcenter_arcface", num_classes=3, embedding_dim=2, K=K, s=4.0, m=0.3,
                 drop_threshold=math.radians(75), drop_start=0.5).double()
    w = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    with torch.no_grad():
        loss.weight.copy_(w)
    # class 0: three samples near sub-centre 0 (dominant), one near its sub-centre 1 (angle pi: outlier)
    x = features_2d([0.05, -0.1, 0.2, math.pi - 0.1])
    y = torch.zeros(4, dtype=torch.long)
    loss.set_progress(0, 10)
    full = loss(x, y)
    assert loss.stats["dropped_fraction"].item() == 0.0
    loss.set_progress(6, 10)
    kept = loss(x, y)
    assert loss.stats["dropped_fraction"].item() == pytest.approx(0.25)
    plain = L.get("subcenter_arcface", num_classes=3, embedding_dim=2, K=K, s=4.0, m=0.3).double()
    with torch.no_grad():
        plain.weight.copy_(w)
    torch.testing.assert_close(full, plain(x, y))
    torch.testing.assert_close(kept, plain(x[:3], y[:3]))
    assert loss.assignments[0].tolist() == [6.0, 2.0]


def test_center_loss_value_and_paper_update():
    torch.manual_seed(0)
    loss = L.get("center", num_classes=3, embedding_dim=2, lambda_c=0.5, alpha=0.5).double()
    c0 = loss.centers.clone()
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.0, 1.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 2])
    value = loss(x, y)
    ce = ce_from_logits(x @ loss.weight.t(), y)
    expected = ce + 0.5 * 0.5 * ((x - c0[y]) ** 2).sum(1).mean()
    torch.testing.assert_close(value, expected)
    new = c0.clone()
    new[0] = c0[0] - 0.5 * ((c0[0] - x[0]) + (c0[0] - x[1])).detach() / 3
    new[2] = c0[2] - 0.5 * (c0[2] - x[2]).detach() / 2
    torch.testing.assert_close(loss.centers, new)
    # the center term's gradient reaches the features only, and eval mode leaves centres alone
    gx = torch.autograd.grad(value, x)[0]
    torch.testing.assert_close(gx, torch.autograd.grad(expected, x)[0])
    loss.eval()
    loss(x.detach(), y)
    torch.testing.assert_close(loss.centers, new)


def test_ring_loss_radius_and_value():
    loss = L.get("ring", num_classes=3, embedding_dim=2, lambda_r=0.2).double()
    x = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2])
    value = loss(x, y)
    assert loss.radius.item() == pytest.approx(16 / 3)  # mean norm of the first batch
    norms = torch.tensor([5.0, 1.0, 10.0], dtype=torch.float64)
    expected = ce_from_logits(x @ loss.weight.t(), y) + 0.2 * 0.5 * ((norms - 16 / 3) ** 2).mean()
    torch.testing.assert_close(value, expected)
    value.backward()
    assert loss.radius.grad.item() == pytest.approx(-0.2 * (norms - 16 / 3).mean().item())
    fixed = L.get("ring", num_classes=3, embedding_dim=2, r_init=2.0)
    fixed(x.float(), y)
    assert fixed.radius.item() == 2.0


# ---------------------------------------------------------------- edge cases and gradcheck

ALL = [
    ("normface", {}), ("l2softmax", {}), ("lsoftmax", dict(m=4)), ("sphereface", dict(m=4)),
    ("subcenter_arcface", dict(K=2)), ("magface", dict(l_a=0.5, u_a=3.0)), ("circle", dict(gamma=16.0)),
    ("center", {}), ("ring", {}),
]


@pytest.mark.parametrize("name,params", ALL)
def test_edge_angles_and_zero_norm_are_finite(name, params):
    loss = L.get(name, num_classes=3, embedding_dim=2, **params).double()
    rows = loss.weight.shape[0]
    with torch.no_grad():
        loss.weight.copy_(weights_2d().repeat_interleave(rows // 3, 0))
    # theta = 0, theta near pi, theta = pi, m theta beyond pi, and a zero-norm feature
    x = torch.cat([features_2d([0.0, math.pi - 1e-4, math.pi, 2.0], norm=2.0), torch.zeros(1, 2, dtype=torch.float64)])
    x.requires_grad_(True)
    value = loss(x, torch.zeros(5, dtype=torch.long))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(x.grad).all() and torch.isfinite(loss.weight.grad).all()
    assert all(torch.isfinite(v).all() for v in loss.stats.values())


@pytest.mark.parametrize("name,params", [c for c in ALL if c[0] != "circle"])
def test_gradcheck_float64(name, params):
    """Circle is left out: its weights a_p, a_n are constants in the paper's gradient, so finite
    differences (which move them) disagree by design; its gradient is checked against the written
    formula and pml above."""
    loss = L.get(name, num_classes=4, embedding_dim=3, **params).double()
    loss.set_progress(50, 100)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 1.5
    w = torch.randn(*loss.weight.shape, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 1])
    if name in ("center", "ring"):
        loss.eval()  # state updates (centres, first-batch radius) are not part of the formula
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, w: functional_call(loss, {"weight": w}, (x, y)), (x, w))


@pytest.mark.parametrize("name,params,message", [
    ("lsoftmax", dict(m=2.5), "m \\(multiplicative angular margin\\) must be an integer >= 1"),
    ("lsoftmax", dict(m=0), "must be an integer >= 1"),
    ("sphereface", dict(m=1.5), "must be an integer >= 1"),
    ("sphereface", dict(lambda_min=-1.0), "lambda_min"),
    ("subcenter_arcface", dict(K=0), "K \\(sub-centres"),
    ("subcenter_arcface", dict(m=2.0), "pi/2"),
    ("subcenter_arcface", dict(drop_threshold=4.0), "drop_threshold"),
    ("magface", dict(l_a=20.0, u_a=10.0), "l_a, u_a"),
    ("magface", dict(l_m=0.9, u_m=0.8), "l_m, u_m"),
    ("magface", dict(u_m=1.6), "l_m, u_m"),
    ("circle", dict(m=1.0), "m \\(Circle"),
    ("circle", dict(gamma=-1.0), "s must be"),
    ("center", dict(alpha=0.0), "alpha"),
    ("center", dict(lambda_c=-1.0), "lambda_c"),
    ("ring", dict(r_init=0.0), "r_init"),
    ("normface", dict(s={"kind": "learnable", "start": 3.0}), "no parameter 'start'"),
    ("l2softmax", dict(alpha=float("inf")), "finite"),
])
def test_bad_parameters_fail_at_construction(name, params, message):
    with pytest.raises(ValueError, match=message) as info:
        L.get(name, num_classes=C, embedding_dim=D, **params)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", [n for n, _ in ALL])
def test_fewer_than_two_classes(name):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        L.get(name, num_classes=1, embedding_dim=D)
    assert L.family(name) == "classification"


CLASSIFICATION = [n for n in L.REGISTRY if L.family(n) == "classification"]


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_every_classification_loss_logs_detached_angles_and_resumes(name):
    torch.manual_seed(0)
    counts = torch.tensor([2, 2, 5, 5])  # the training set's images per class, for a loss that needs them
    loss = L.get(name, num_classes=4, embedding_dim=3, class_counts=counts)
    x, y = torch.randn(8, 3) * 20, torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    loss.set_progress(10, 100)
    value = loss(x, y)
    assert {"theta_target", "theta_other"} <= set(loss.stats)
    for key, stat in loss.stats.items():
        assert stat.ndim == 0 and not stat.requires_grad and math.isfinite(float(stat)), key
    assert 0 <= float(loss.stats["theta_target"]) <= math.pi
    # a checkpoint (state_dict) restores the same loss, stateful parts (centres, radius) included
    torch.manual_seed(1)
    restored = L.get(name, num_classes=4, embedding_dim=3, class_counts=counts)
    restored.load_state_dict(loss.state_dict())
    restored.set_progress(10, 100)
    loss.eval()
    restored.eval()
    torch.testing.assert_close(restored(x, y), loss(x, y))
    assert torch.isfinite(value)
