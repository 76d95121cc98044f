"""COCO, UP loss, CCL and DeepVisage: each against its paper's equations written out in numpy on a
small case, gradcheck in float64, parameter validation, the running statistics' exact resume, the
UP term's behaviour and the class-counts mechanism that feeds it."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

import mlcompare.losses as L
from mlcompare.config.comparison import MethodConfig
from mlcompare.data import FaceData
from mlcompare.run import runner

X = np.array([[1.0, 2.0], [-1.5, 0.5], [0.3, -2.0], [2.0, 1.0]])
Y = np.array([0, 1, 2, 1])
W = np.array([[1.0, 0.0], [-1.0, 1.0], [0.5, -2.0]])


def ce(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy, written out: ``log sum exp z_j - z_y``."""
    top = logits.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def build(name: str, weight: np.ndarray = W, **params) -> L.Loss:
    loss = L.get(name, num_classes=weight.shape[0], embedding_dim=weight.shape[1], **params).double()
    with torch.no_grad():
        loss.weight.copy_(torch.from_numpy(weight))
    return loss


def value(loss: L.Loss, x: np.ndarray = X, y: np.ndarray = Y) -> float:
    return float(loss(torch.from_numpy(x), torch.from_numpy(y)).detach())


# ---------------------------------------------------------------------------------------------- COCO

def test_coco_is_softmax_over_alpha_times_cosines_to_unit_centroids():
    expected = ce(2.5 * unit(X) @ unit(W).T, Y)
    assert value(build("coco", alpha=2.5)) == pytest.approx(expected, rel=1e-12)


def test_coco_default_alpha_is_half_log_of_the_odds_times_other_classes():
    # K = 3, p = 0.9: 1/2 log(2 * 0.9 / 0.1) = 1/2 log 18
    loss = build("coco")
    assert loss.alpha == pytest.approx(0.5 * math.log(18.0), rel=1e-12)
    assert value(loss) == pytest.approx(ce(0.5 * math.log(18.0) * unit(X) @ unit(W).T, Y), rel=1e-12)
    # at that alpha a feature on its centroid, every other centroid antipodal, gets probability p
    a = L.get("coco", num_classes=3, embedding_dim=2, p=0.75).alpha
    assert math.exp(a) / (math.exp(a) + 2 * math.exp(-a)) == pytest.approx(0.75, rel=1e-12)
    assert float(loss.stats["alpha"]) == pytest.approx(loss.alpha)


# --------------------------------------------------------------------------------------------- UP loss

COUNTS = [10, 1, 2]  # rare_max=2: classes 1 and 2 are under-represented, class 0 normal


def test_uploss_is_softmax_plus_lambda_times_the_rare_norms_squared_distance_to_the_normal_mean():
    norm2 = (W ** 2).sum(axis=1)  # 1, 2, 4.25
    a = norm2[0]
    up = ((norm2[1] - a) ** 2 + (norm2[2] - a) ** 2) / 2
    loss = build("uploss", class_counts=torch.tensor(COUNTS), lambda_up=0.3)
    assert value(loss) == pytest.approx(ce(X @ W.T, Y) + 0.3 * up, rel=1e-12)
    assert float(loss.stats["up_term"]) == pytest.approx(up, rel=1e-12) and int(loss.stats["rare_classes"]) == 2
    # rare_max moves the split: with rare_max=1 only class 1 is rare, the normal mean is over 0 and 2
    wide = build("uploss", class_counts=COUNTS, lambda_up=1.0, rare_max=1)
    assert float(wide.up_term().detach()) == pytest.approx((norm2[1] - (norm2[0] + norm2[2]) / 2) ** 2, rel=1e-12)


def test_the_up_term_is_zero_when_all_norms_are_equal_or_a_group_is_empty():
    equal = np.array([[2.0, 0.0], [0.0, -2.0], [math.sqrt(2.0), math.sqrt(2.0)]])
    assert float(build("uploss", equal, class_counts=COUNTS).up_term().detach()) == pytest.approx(0.0, abs=1e-12)
    assert float(build("uploss", class_counts=[5, 5, 5]).up_term().detach()) == 0.0  # no rare class
    assert float(build("uploss", class_counts=[1, 2, 1]).up_term().detach()) == 0.0  # no normal class


def test_the_up_gradient_lifts_small_rare_norms_toward_the_normal_mean():
    weight = np.array([[3.0, 0.0], [0.0, 0.5], [0.2, 0.2], [0.0, -3.0]])  # normal: 0, 3 (|w|^2 = 9)
    loss = build("uploss", weight, class_counts=[9, 1, 2, 9], lambda_up=1.0)
    loss.up_term().backward()
    g, w = loss.weight.grad, loss.weight.detach()
    radial = (g * w).sum(dim=1)  # d term / d |w_k| times |w_k|: negative means descent lengthens w_k
    assert radial[1] < 0 and radial[2] < 0 and radial[0] > 0 and radial[3] > 0
    before = w.pow(2).sum(dim=1)
    after = (w - 1e-3 * g).pow(2).sum(dim=1)
    target = before[[0, 3]].mean()
    assert ((after[[1, 2]] - target).abs() < (before[[1, 2]] - target).abs()).all()


def test_uploss_gets_class_counts_only_through_the_declared_mechanism():
    assert L.REGISTRY["uploss"].needs_class_counts and not L.REGISTRY["arcface"].needs_class_counts
    with pytest.raises(ValueError, match="loss 'uploss' needs class_counts, the training set's images per class"):
        L.get("uploss", num_classes=3, embedding_dim=2)
    L.get("arcface", num_classes=3, embedding_dim=2, class_counts=torch.tensor(COUNTS))  # others ignore them
    assert "class_counts" not in L.parameters("uploss")
    with pytest.raises(ValueError, match="class_counts must be 3 non-negative integers"):
        L.get("uploss", num_classes=3, embedding_dim=2, class_counts=[1, 2])


def test_the_runner_counts_the_images_of_the_set_a_method_trains_on():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    data = FaceData(torch.zeros(6, 3, 4, 4, dtype=torch.uint8), labels, ["a", "b", "c"], "t")
    assert runner.class_counts(data).tolist() == [3, 1, 2]
    method = MethodConfig(name="up", loss="uploss", params={"rare_max": 1})
    loss = runner.build_loss(method, num_classes=3, embedding_dim=2, class_counts=runner.class_counts(data))
    assert loss.rare.tolist() == [False, True, False]
    with torch.device("meta"):  # the runner's pre-flight build
        runner.build_loss(method, num_classes=3, embedding_dim=2, class_counts=runner.class_counts(data))


# ------------------------------------------------------------------------------------ CCL, DeepVisage

def centred(x: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)  # batch statistics, biased variance


def test_ccl_is_the_centred_norm_times_cosines_with_an_angular_margin_on_the_target():
    xc = centred(X)
    cos = unit(xc) @ unit(W).T
    rows = np.arange(len(Y))
    theta = np.arccos(cos[rows, Y])
    assert (theta + 0.4 <= math.pi).all()
    logits = cos.copy()
    logits[rows, Y] = np.cos(theta + 0.4)
    logits *= np.linalg.norm(xc, axis=1, keepdims=True)
    loss = build("ccl", m=0.4)
    assert value(loss) == pytest.approx(ce(logits, Y), rel=1e-10)
    assert float(loss.stats["feature_norm"]) == pytest.approx(np.linalg.norm(xc, axis=1).mean(), rel=1e-10)
    without = np.linalg.norm(xc, axis=1, keepdims=True) * cos
    assert value(build("ccl", m=0.0)) == pytest.approx(ce(without, Y), rel=1e-10)


def test_ccl_running_statistics_follow_the_momentum_and_serve_evaluation():
    loss = build("ccl", momentum=0.25)
    value(loss)
    np.testing.assert_allclose(loss.running_mean.numpy(), 0.25 * X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(loss.running_var.numpy(), 0.75 + 0.25 * X.var(axis=0, ddof=1), rtol=1e-12)
    mean, var = loss.running_mean.numpy().copy(), loss.running_var.numpy().copy()
    loss.eval()
    xc = (X - mean) / np.sqrt(var + 1e-5)
    cos = unit(xc) @ unit(W).T
    rows = np.arange(len(Y))
    theta = np.arccos(cos[rows, Y])
    logits = cos.copy()
    logits[rows, Y] = np.where(theta + 0.3 <= math.pi, np.cos(theta + 0.3), cos[rows, Y] - 0.3 * math.sin(0.3))
    assert value(loss) == pytest.approx(ce(np.linalg.norm(xc, axis=1, keepdims=True) * logits, Y), rel=1e-10)
    np.testing.assert_array_equal(loss.running_mean.numpy(), mean)  # evaluation does not update them
    np.testing.assert_allclose(loss.angle_cosines(torch.from_numpy(X)).detach().numpy(), cos, rtol=1e-10)


def test_deepvisage_is_a_plain_softmax_on_the_normalised_features():
    assert value(build("deepvisage")) == pytest.approx(ce(centred(X) @ W.T, Y), rel=1e-10)


@pytest.mark.parametrize("name", ["ccl", "deepvisage"])
def test_running_statistics_resume_bit_exactly(name):
    def step(loss, opt, seed):
        g = torch.Generator().manual_seed(seed)
        value = loss(torch.randn(8, 5, generator=g) * 3 + 1, torch.randint(0, 4, (8,), generator=g))
        opt.zero_grad()
        value.backward()
        opt.step()
        return value.detach()

    torch.manual_seed(0)
    loss = L.get(name, num_classes=4, embedding_dim=5)
    opt = torch.optim.SGD(loss.parameters(), lr=0.1)
    for seed in range(3):
        step(loss, opt, seed)
    assert not torch.equal(loss.running_mean, torch.zeros(5))
    state = copy.deepcopy(loss.state_dict())
    assert {"running_mean", "running_var"} <= set(state)
    torch.manual_seed(1)
    fresh = L.get(name, num_classes=4, embedding_dim=5)
    fresh.load_state_dict(state)
    fresh_opt = torch.optim.SGD(fresh.parameters(), lr=0.1)
    assert torch.equal(step(loss, opt, 3), step(fresh, fresh_opt, 3))
    for k, v in loss.state_dict().items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, fresh.state_dict()[k]), k
    loss.eval()
    fresh.eval()
    x, y = torch.randn(6, 5), torch.arange(6) % 4
    assert torch.equal(loss(x, y), fresh(x, y))


# ------------------------------------------------------------------------------------------ all four

SEEDS = [("coco", {}), ("uploss", {"class_counts": [9, 1, 2, 9]}), ("ccl", {}), ("deepvisage", {})]


@pytest.mark.parametrize("name,params", SEEDS)
def test_gradcheck_float64(name, params):
    torch.manual_seed(0)
    loss = L.get(name, num_classes=4, embedding_dim=3, **params).double()
    x = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    w = (torch.randn(4, 3, dtype=torch.float64) * 0.7).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    assert torch.autograd.gradcheck(lambda a, b: functional_call(loss, {"weight": b}, (a, y)), (x, w))


@pytest.mark.parametrize("name,params,match", [
    ("coco", {"alpha": 0.0}, r"alpha \(COCO feature scale\) must be a number in \(0, inf\) or None"),
    ("coco", {"alpha": float("nan")}, r"alpha \(COCO feature scale\)"),
    ("coco", {"p": 1.0}, r"p \(COCO target probability behind the default alpha\) must be in \(0, 1\)"),
    ("coco", {"p": 0.2}, r"p=0.2 gives alpha=.* <= 0 for 4 classes; p must exceed 1/4"),
    ("uploss", {"class_counts": [1, 1, 9, 9], "lambda_up": -0.1},
     r"lambda_up \(UP term weight\) must be a number in \[0, inf\)"),
    ("uploss", {"class_counts": [1, 1, 9, 9], "rare_max": 0}, r"rare_max .* must be an integer >= 1"),
    ("uploss", {"class_counts": [1, 1, 9, 9], "rare_max": 2.5}, r"rare_max .* must be an integer >= 1"),
    ("uploss", {"class_counts": [1, -1, 9, 9]}, r"class_counts must be 4 non-negative integers"),
    ("ccl", {"m": -0.1}, r"m \(CCL angular margin, radians\) must be in \[0, pi/2\)"),
    ("ccl", {"m": 1.6}, r"m \(CCL angular margin, radians\)"),
    ("ccl", {"momentum": 0.0}, r"momentum \(running-statistics update rate\) must be in \(0, 1\]"),
    ("ccl", {"eps": 0.0}, r"eps \(variance floor\) must be a number in \(0, inf\)"),
    ("deepvisage", {"momentum": 1.5}, r"momentum \(running-statistics update rate\) must be in \(0, 1\]"),
])
def test_each_parameter_is_validated_in_one_line(name, params, match):
    with pytest.raises(ValueError, match=match):
        L.get(name, num_classes=4, embedding_dim=3, **params)


@pytest.mark.parametrize("name,params", SEEDS)
def test_the_declared_interface(name, params):
    cls = L.REGISTRY[name]
    assert cls.family == "classification" and L.family(name) == "classification"
    assert set(cls.shown_params) <= set(L.parameters(name)) and set(cls.search_space) <= set(L.parameters(name))
    loss = L.get(name, num_classes=4, embedding_dim=3, **params)
    loss(torch.randn(8, 3), torch.arange(8) % 4)
    assert {"theta_target", "theta_other"} <= set(loss.stats)
    assert all(s.ndim == 0 and not s.requires_grad for s in loss.stats.values())
    assert loss.angle_cosines(torch.randn(5, 3)).shape == (5, 4)
