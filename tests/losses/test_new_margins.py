"""AdaFace, CurricularFace, ElasticFace (Arc, Cos), AdaCos, UniFace, SphereFace2 and X2-Softmax: each against its
formula written out from angles computed with atan2 (2-D, 3 classes at known angles), gradcheck,
parameter validation, and the running statistics / margin generator resuming bit-exactly."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import mlcompare.losses as L
from mlcompare.backbones import ResNetFace
from mlcompare.config.comparison import TrainConfig
from mlcompare.train.trainer import train
from tests.losses.margin_cases import angles_atan2, ce_from_logits, features_2d, weights_2d
from tests.trainer.test_trainer import tiny_data

ALPHAS = (0.3, 1.2, -2.0, 2.9, 0.05)  # feature angles; labels below make the target angles varied
LABELS = torch.tensor([0, 1, 0, 2, 0])


def _case(name, norms=(1.0, 1.0, 1.0, 1.0, 1.0), **params):
    loss = L.get(name, num_classes=3, embedding_dim=2, **params).double()
    with torch.no_grad():
        loss.weight.copy_(weights_2d())
    x = torch.cat([features_2d([a], norm=n) for a, n in zip(ALPHAS, norms)])
    theta = angles_atan2(x, weights_2d())
    return loss, x, theta


def _onehot(labels=LABELS, c=3):
    return F.one_hot(labels, c).bool()


def test_adaface_matches_its_formula_and_updates_the_running_statistics():
    norms = (12.0, 30.0, 5.0, 22.0, 18.0)
    loss, x, theta = _case("adaface", norms=norms, s=16.0, m=0.4, h=0.333, t_alpha=0.1)
    n = torch.tensor(norms, dtype=torch.float64)
    mu = 0.1 * n.mean() + 0.9 * 20.0
    sd = 0.1 * n.std() + 0.9 * 100.0
    eps = 1e-3
    z = (0.333 * (n - mu) / (sd + eps)).clamp(-1, 1)
    cos = torch.cos(theta).clamp(-1 + eps, 1 - eps)
    ty = theta[torch.arange(5), LABELS].clamp(math.acos(1 - eps), math.acos(-1 + eps))
    target = torch.cos((ty - 0.4 * z).clamp(eps, math.pi - eps)) - (0.4 + 0.4 * z)
    logits = torch.where(_onehot(), target[:, None], cos) * 16.0
    assert torch.allclose(loss(x, LABELS), ce_from_logits(logits, LABELS), atol=1e-10)
    assert torch.allclose(loss.margin_logits.batch_mean, mu) and torch.allclose(loss.margin_logits.batch_std, sd)
    loss.eval()  # outside training the statistics stay
    loss(x, LABELS)
    assert torch.allclose(loss.margin_logits.batch_mean, mu)


def test_curricularface_matches_its_formula_with_t_updated_before_use():
    loss, x, theta = _case("curricularface", s=8.0, m=0.5, alpha=0.3)
    with torch.no_grad():
        loss.margin_logits.t.fill_(0.2)
    cos = torch.cos(theta)
    ty = theta[torch.arange(5), LABELS]
    t = 0.3 * torch.cos(ty).mean() + 0.7 * 0.2
    phi = torch.where(ty + 0.5 < math.pi, torch.cos(ty + 0.5), torch.cos(ty) - 0.5 * math.sin(0.5))
    hard = cos > torch.cos(ty + 0.5)[:, None]
    negatives = torch.where(hard, cos * (t + cos), cos)
    logits = torch.where(_onehot(), phi[:, None], negatives) * 8.0
    assert hard[~_onehot()].any() and (~hard[~_onehot()]).any()  # the case has both kinds of negatives
    assert torch.allclose(loss(x, LABELS), ce_from_logits(logits, LABELS), atol=1e-10)
    assert torch.allclose(loss.margin_logits.t, t)


@pytest.mark.parametrize("name, m", [("elasticface_arc", 0.5), ("elasticface_cos", 0.35)])
def test_elasticface_draws_its_margins_from_its_seeded_generator(name, m):
    loss, x, theta = _case(name, s=8.0, m=m, std=0.1, seed=7)
    margins = torch.normal(m, 0.1, (5,), generator=torch.Generator().manual_seed(7)).double()
    ty = theta[torch.arange(5), LABELS]
    target = torch.cos(ty + margins) if name == "elasticface_arc" else torch.cos(ty) - margins
    logits = torch.where(_onehot(), target[:, None], torch.cos(theta)) * 8.0
    assert torch.allclose(loss(x, LABELS), ce_from_logits(logits, LABELS), atol=1e-10)
    # the generator's state travels in state_dict: a fresh loss continues the same draws
    fresh = L.get(name, num_classes=3, embedding_dim=2, s=8.0, m=m, std=0.1, seed=7).double()
    fresh.load_state_dict(loss.state_dict())
    assert torch.equal(loss(x, LABELS), fresh(x, LABELS))
    unseeded = L.get(name, num_classes=3, embedding_dim=2, s=8.0, m=m, std=0.1, seed=7).double()
    unseeded.load_state_dict({k: v for k, v in loss.state_dict().items() if k != "_extra_state"}, strict=False)
    assert not torch.equal(loss(x, LABELS), unseeded(x, LABELS))


def test_adacos_fixed_and_dynamic_scale():
    fixed, x, theta = _case("adacos", dynamic=False)
    s0 = math.sqrt(2) * math.log(3 - 1)
    assert torch.allclose(fixed(x, LABELS), ce_from_logits(s0 * torch.cos(theta), LABELS), atol=1e-10)
    assert float(fixed.s) == pytest.approx(s0)
    dynamic, x, theta = _case("adacos", dynamic=True)
    cos = torch.cos(theta)
    b_avg = sum(math.exp(s0 * float(cos[i, j])) for i in range(5) for j in range(3) if j != LABELS[i]) / 5
    ty = sorted(float(theta[i, LABELS[i]]) for i in range(5))[2]  # the median of 5
    s1 = math.log(b_avg) / math.cos(min(math.pi / 4, ty))
    assert torch.allclose(dynamic(x, LABELS), ce_from_logits(s1 * cos, LABELS), atol=1e-10)
    assert float(dynamic.s) == pytest.approx(s1)


def test_uniface_matches_its_formula():
    loss, x, theta = _case("uniface", s=4.0, m=0.4, lam=0.5, r=2.0)
    b = math.log(3 * 2.0 * 10)
    assert float(loss.bias.detach()) == pytest.approx(b, rel=1e-7)
    b = float(loss.bias.detach())  # the parameter holds it in float32
    cos = torch.cos(theta)
    total = 0.0
    for i in range(5):
        for j in range(3):
            if j == LABELS[i]:
                total += math.log(1 + math.exp(-max(-4.0, min(4.0, 4.0 * (float(cos[i, j]) - 0.4) - b))))
            else:
                total += 0.5 * math.log(1 + math.exp(max(-4.0, min(4.0, 4.0 * float(cos[i, j]) - b))))
    assert float(loss(x, LABELS).detach()) == pytest.approx(total / 5, rel=1e-10)


def test_sphereface2_matches_its_formula_and_the_official_initial_bias():
    loss, x, theta = _case("sphereface2", lambda_=0.7, r=10.0, m=0.3, t=3.0, lw=5.0)
    z = 0.7 / (0.3 * 2)
    ay, ai = 10 * (2 * 0.5 ** 3 - 1 - 0.3), 10 * (2 * 0.5 ** 3 - 1 + 0.3)
    b = math.log(2 * z) - ai - math.log(1 - z + math.sqrt((1 - z) ** 2 + 4 * z * math.exp(ay - ai)))
    assert float(loss.bias.detach()) == pytest.approx(b, rel=1e-7)
    b = float(loss.bias.detach())  # the parameter holds it in float32
    total = 0.0
    for i in range(5):
        for j in range(3):
            g = 2 * ((math.cos(float(theta[i, j])) + 1) / 2) ** 3 - 1
            if j == LABELS[i]:
                total += 0.7 * math.log(1 + math.exp(-(10 * (g - 0.3) + b)))
            else:
                total += 0.3 * math.log(1 + math.exp(10 * (g + 0.3) + b))
    assert float(loss(x, LABELS).detach()) == pytest.approx(5.0 / 10.0 * total / 5, rel=1e-10)


def test_x2softmax_matches_its_formula():
    loss, x, theta = _case("x2softmax", s=8.0, a=-0.9, h=0.1, k=0.65)
    ty = theta[torch.arange(5), LABELS]
    logits = torch.where(_onehot(), (-0.9 * (ty - 0.1) ** 2 + 0.65)[:, None], torch.cos(theta)) * 8.0
    assert torch.allclose(loss(x, LABELS), ce_from_logits(logits, LABELS), atol=1e-10)


@pytest.mark.parametrize("name, params", [
    # AdaFace's norm term z is detached (as the official code): with h large z saturates at +-1, so the
    # function gradcheck differentiates numerically has the same (zero) dependence through |x|
    ("adaface", {"s": 4.0, "h": 1e3}), ("curricularface", {"s": 4.0}), ("elasticface_arc", {"s": 4.0}),
    ("elasticface_cos", {"s": 4.0}), ("adacos", {}), ("uniface", {"s": 4.0}), ("sphereface2", {"r": 4.0}), ("x2softmax", {"s": 4.0})])
def test_gradcheck(name, params):
    torch.manual_seed(0)
    loss = L.get(name, num_classes=4, embedding_dim=3, **params).double()
    loss.eval()  # running statistics fixed: the function gradcheck differentiates must not change between calls
    with torch.no_grad():
        loss.weight.normal_()
    x = (torch.randn(6, 3, dtype=torch.float64) * 5).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    if name.startswith("elasticface"):
        state = loss.margin_logits.generator.get_state()

        def fn(inp):  # the same margins on every evaluation
            loss.margin_logits.generator.set_state(state)
            return loss(inp, y)
    else:
        def fn(inp):
            return loss(inp, y)
    assert torch.autograd.gradcheck(fn, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name, params, message", [
    ("adaface", {"m": -0.1}, "m \\(AdaFace margin, radians\\) must be in"),
    ("adaface", {"h": 0.0}, "h \\(AdaFace"),
    ("adaface", {"t_alpha": 1.5}, "t_alpha"),
    ("curricularface", {"m": 2.0}, "m \\(CurricularFace"),
    ("curricularface", {"alpha": 0.0}, "alpha \\(CurricularFace"),
    ("elasticface_arc", {"m": 0.0}, "ElasticFace-Arc"),
    ("elasticface_arc", {"std": -1.0}, "std"),
    ("elasticface_cos", {"seed": -1}, "seed"),
    ("adacos", {"dynamic": 1}, "dynamic"),
    ("uniface", {"lam": 0.0}, "lam"),
    ("uniface", {"r": -1.0}, "r \\(UniFace"),
    ("uniface", {"s": 0.0}, "s \\(UniFace"),
    ("sphereface2", {"lambda_": 1.0}, "lambda_"),
    ("sphereface2", {"t": 0.0}, "t \\(SphereFace2"),
    ("sphereface2", {"lw": 0.0}, "lw"),
    ("sphereface2", {"m": 1.0}, "m \\(SphereFace2"),
    ("x2softmax", {"a": 0.5}, "a \\(X2-Softmax"),
    ("x2softmax", {"h": 4.0}, "h \\(X2-Softmax"),
    ("x2softmax", {"k": 2.0}, "k \\(X2-Softmax"),
])
def test_bad_parameters_are_one_line_errors(name, params, message):
    with pytest.raises(ValueError, match=message) as err:
        L.get(name, num_classes=4, embedding_dim=3, **params)
    assert "\n" not in str(err.value)


def test_adacos_needs_three_classes_and_adaface_a_batch_of_two():
    with pytest.raises(ValueError, match="num_classes >= 3"):
        L.get("adacos", num_classes=2, embedding_dim=3)
    with pytest.raises(ValueError, match="at least 2"):
        L.get("adaface", num_classes=3, embedding_dim=2)(torch.randn(1, 2), torch.tensor([0]))


CFG = TrainConfig(steps=6, p=4, k=3, lr=1e-2, warmup_steps=2, log_every=1, checkpoint_every=3)


def _train(name, checkpoint=None, resume=False, stop_at=None):
    torch.manual_seed(0)
    model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    loss = L.get(name, num_classes=8, embedding_dim=16)

    class Stop(Exception):
        pass

    def stop(step, value):
        if step == stop_at:
            raise Stop

    try:
        result = train(model, loss, tiny_data(), CFG, seed=0, device=torch.device("cpu"), checkpoint=checkpoint,
                       resume=resume, on_step=stop if stop_at else None)
    except Stop:
        return model, loss, None
    return model, loss, result


@pytest.mark.parametrize("name, state", [("adaface", ("batch_mean", "batch_std")), ("curricularface", ("t",)),
                                         ("adacos", ("s",)), ("elasticface_arc", ())])
def test_running_statistics_resume_bit_exactly(tmp_path, name, state):
    full_model, full_loss, full = _train(name)
    ckpt = tmp_path / "c.pt"
    _train(name, checkpoint=ckpt, stop_at=4)  # interrupted after the checkpoint of step 3
    model, loss, resumed = _train(name, checkpoint=ckpt, resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    def holder(built):  # a margin's statistics are its margin object's
        return built.margin_logits if isinstance(built, L.MarginSoftmax) else built

    for key in state:
        assert torch.equal(getattr(holder(loss), key), getattr(holder(full_loss), key)), key
        fresh = L.get(name, num_classes=8, embedding_dim=16)
        assert getattr(holder(loss), key) != getattr(holder(fresh), key), f"{key} never moved"
    for a, b in zip(full_model.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
