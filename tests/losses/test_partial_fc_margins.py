"""Partial FC with every registered margin (ArcFace, CosFace, combined, NormFace, SphereFace, AdaFace,
CurricularFace, ElasticFace, MagFace, X2-Softmax): the same margin object as the loss of that name.

References: the registry loss with the same weights (one rank, every class), the registry loss's
logits restricted to the sampled columns (sampling), and the registry loss on the whole batch in one
process against 2 gloo processes (sharding, spawned here). The losses that are not one softmax over
per-class logits are refused with their reason.
"""
from __future__ import annotations

import inspect

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import mlcompare.losses as L
from mlcompare.losses.partial_fc import sample_classes, shard_range

C, D, B = 11, 5, 9

CASES = {
    "arcface": {"s": 8.0, "m": 0.5},
    "cosface": {"s": 8.0, "m": 0.35},
    "combined": {"s": 8.0, "m1": 1.0, "m2": 0.2, "m3": 0.1},
    "normface": {"s": 8.0},
    "sphereface": {"s": 8.0, "m": 3, "lambda_base": 10.0},
    "adaface": {"s": 16.0, "m": 0.4, "h": 0.333, "t_alpha": 0.3},
    "curricularface": {"s": 8.0, "m": 0.5, "alpha": 0.3},
    "elasticface_arc": {"s": 8.0, "m": 0.5, "std": 0.1, "seed": 3},
    "elasticface_cos": {"s": 8.0, "m": 0.35, "std": 0.1, "seed": 3},
    "magface": {"s": 8.0, "l_a": 4.0, "u_a": 9.0, "l_m": 0.2, "u_m": 0.6, "lambda_g": 2.0, "norm_gain": False},
    "x2softmax": {"s": 8.0, "a": -0.9, "h": 0.1, "k": 0.65},
}
BUFFERS = {"adaface": ("batch_mean", "batch_std"), "curricularface": ("t",)}


def _inputs(seed: int = 0, classes: int = C, batch: int = B):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, D, generator=g, dtype=torch.float64) * 3  # norms 2-12: AdaFace's and MagFace's range
    w = torch.randn(classes, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=g)
    return x, w, y


def _with_weight(loss, weight):
    loss = loss.double()
    with torch.no_grad():
        loss.weight.copy_(weight)
    return loss


def _steps(loss, x, y, steps: int = 2):
    """Loss and gradients of the last of ``steps`` forwards: the later ones use the updated running statistics."""
    for _ in range(steps):
        xg = x.clone().requires_grad_(True)
        value = loss(xg, y)
        gx, gw = torch.autograd.grad(value, (xg, loss.weight))
    return value.detach(), gx, gw


def _state(loss, name):
    """The running statistics and the margin generator's state, as comparable tensors."""
    state = [loss.margin_logits.get_buffer(b) for b in BUFFERS.get(name, ())]
    if name.startswith("elasticface"):
        state.append(loss.margin_logits.generator.get_state())
    return state


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_rank_at_sample_rate_one_is_the_registry_loss(name):
    x, w, y = _inputs()
    ours = _with_weight(L.get("partial_fc", num_classes=C, embedding_dim=D, margin=name, **CASES[name]), w)
    full = _with_weight(L.get(name, num_classes=C, embedding_dim=D, **CASES[name]), w)
    for a, b in zip(_steps(ours, x, y), _steps(full, x, y)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    for a, b in zip(_state(ours, name), _state(full, name)):
        assert torch.equal(a, b)
    for key, value in full.stats.items():
        torch.testing.assert_close(ours.stats[key], value, rtol=0, atol=1e-6, msg=key)
    # the state travels in state_dict (--resume): a fresh one continues where this one is
    fresh = L.get("partial_fc", num_classes=C, embedding_dim=D, margin=name, **CASES[name]).double()
    fresh.load_state_dict(ours.state_dict())
    for a, b in zip(_state(fresh, name), _state(ours, name)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_sampled_logits_are_the_full_logits_columns(name):
    classes, rate = 40, 0.25
    x, w, y = _inputs(1, classes=classes, batch=6)
    ours = _with_weight(L.get("partial_fc", num_classes=classes, embedding_dim=D, margin=name, sample_rate=rate,
                              **CASES[name]), w)
    full = _with_weight(L.get(name, num_classes=classes, embedding_dim=D, **CASES[name]), w)
    torch.manual_seed(3)
    value, gx, _ = _steps(ours, x, y, steps=1)
    torch.manual_seed(3)  # the same draw, to know which classes the loss saw
    index, mapped = sample_classes(y, classes, int(rate * classes))
    assert index.numel() < classes and int(ours.stats["sampled_classes"]) == index.numel()
    xf = x.clone().requires_grad_(True)
    logits = full.margin_logits(full.class_cosines(xf), y, xf)[:, index]  # the full computation's columns
    penalty = full.margin_logits.penalty(xf)
    # the margin's logits are scaled already
    expected = F.cross_entropy(logits, mapped) + (0.0 if penalty is None else penalty)
    torch.testing.assert_close(value, expected.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(gx, torch.autograd.grad(expected, xf)[0], rtol=0, atol=1e-6)
    for a, b in zip(_state(ours, name), _state(full, name)):  # a matmul over fewer columns may round differently
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bf16_autocast_step_is_finite(name):
    x, w, y = _inputs(2, classes=40, batch=12)
    loss = L.get("partial_fc", num_classes=40, embedding_dim=D, margin=name, sample_rate=0.5, **CASES[name])
    xb = x.to(torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(xb, y)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(xb.grad.float()).all() and torch.isfinite(loss.weight.grad).all()


@pytest.mark.parametrize("params, message", [
    ({"margin": "adacos"}, "partial_fc cannot shard margin='adacos': its dynamic scale averages exp"),
    ({"margin": "uniface"}, "partial_fc cannot shard margin='uniface': it is a sum of per-class binary terms"),
    ({"margin": "sphereface2"}, "partial_fc cannot shard margin='sphereface2': it is a sum of per-class binary"),
    ({"margin": "adaface", "alpha": 0.1}, "alpha is not a parameter of margin='adaface'; it takes m, h, t_alpha"),
    ({"margin": "curricularface", "easy_margin": True}, "easy_margin is not a parameter of margin='curricularface'"),
    ({"margin": "arcface", "h": 0.3}, "h is not a parameter of margin='arcface'; it takes m, easy_margin"),
    ({"margin": "adaface", "h": 0.0}, r"h \(AdaFace norm-concentration factor\) must be > 0"),
    ({"margin": "elasticface_arc", "m": 2.0}, r"m \(ElasticFace-Arc mean angular margin"),
    ({"margin": "x2softmax", "a": 0.5}, r"a \(X2-Softmax curvature\)"),
    ({"margin": "magface", "l_a": 5.0, "u_a": 1.0}, "l_a, u_a"),
    ({"margin": "lsoftmax"}, "margin must be one of arcface, cosface, combined, adaface, curricularface"),
])
def test_refused_margins_and_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ValueError, match=message) as info:
        L.get("partial_fc", num_classes=C, embedding_dim=D, **params)
    assert "\n" not in str(info.value)


def test_every_margin_is_covered_here():
    assert sorted(CASES) == sorted(L.margins())


@pytest.mark.parametrize("name", sorted(L.margins()))
def test_partial_fc_takes_each_margin_with_its_defaults(name):
    """One declaration: Partial FC builds the loss's own margin class, at its defaults but s = 64."""
    own = inspect.signature(L.REGISTRY[name].__init__).parameters
    built = L.get("partial_fc", num_classes=C, embedding_dim=D, margin=name).margin_logits
    direct = L.get(name, num_classes=C, embedding_dim=D).margin_logits
    assert type(built) is type(direct) is L.REGISTRY[name]
    assert set(p for p in own if p != "self") <= set(L.parameters("partial_fc"))
    assert float(built.scale()) == 64.0
    for p in own:  # every other parameter as the loss of that name sets it
        if p not in ("self", "s") and hasattr(direct, p):
            assert getattr(built, p) == getattr(direct, p), p


def test_a_checkpoint_from_before_margin_logits_still_loads():
    loss = L.get("adaface", num_classes=C, embedding_dim=D)
    with torch.no_grad():
        loss.margin_logits.batch_mean.fill_(7.0)
    old = {k.removeprefix("margin_logits."): v for k, v in loss.state_dict().items()}  # "batch_mean", as before
    fresh = L.get("adaface", num_classes=C, embedding_dim=D)
    fresh.load_state_dict(old)
    assert float(fresh.margin_logits.batch_mean) == 7.0 and float(fresh.margin_logits.batch_std) == 100.0


def test_a_checkpoint_from_before_the_margin_held_its_scale_still_loads():
    scale = {"kind": "learnable", "init": 8.0}
    loss = L.get("arcface", num_classes=C, embedding_dim=D, s=scale)
    with torch.no_grad():
        loss.margin_logits.scale.log_s.fill_(2.5)
    old = {k.removeprefix("margin_logits."): v for k, v in loss.state_dict().items()}  # "scale.log_s", as before
    assert "scale.log_s" in old
    fresh = L.get("arcface", num_classes=C, embedding_dim=D, s=scale)
    fresh.load_state_dict(old)
    assert float(fresh.margin_logits.scale.log_s) == 2.5


# ---- two gloo processes -------------------------------------------------------------------

WORLD, GLOBAL_B = 2, 8
SHARDED = ("adaface", "curricularface", "elasticface_arc", "magface", "x2softmax")


def _global_batch():
    x, w, y = _inputs(5, classes=C, batch=GLOBAL_B)
    y[:3] = torch.tensor([0, 1, 10])  # classes on both shards
    return x, w, y


def _worker(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    try:
        x, w, y = _global_batch()
        local = slice(rank * GLOBAL_B // WORLD, (rank + 1) * GLOBAL_B // WORLD)
        out = {}
        for name in SHARDED:
            for correction in (False, True):
                loss = L.get("partial_fc", num_classes=C, embedding_dim=D, margin=name, rank=rank, world_size=WORLD,
                             ddp_grad_correction=correction, **CASES[name])
                loss = _with_weight(loss, w[loss.class_start:loss.class_start + loss.num_local])
                out[name, correction] = (_steps(loss, x[local], y[local]), _state(loss, name),
                                         {k: v.clone() for k, v in loss.stats.items()})
        torch.save(out, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_the_registry_loss_on_the_whole_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    x, w, y = _global_batch()
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name in SHARDED:
        full = _with_weight(L.get(name, num_classes=C, embedding_dim=D, **CASES[name]), w)
        value, gx, gw = _steps(full, x, y)
        for correction in (False, True):
            for rank, res in enumerate(results):
                (v, rx, rw), state, stats = res[name, correction]
                start, n = shard_range(C, rank, WORLD)
                half = slice(rank * GLOBAL_B // WORLD, (rank + 1) * GLOBAL_B // WORLD)
                torch.testing.assert_close(v, value, rtol=0, atol=1e-10)
                torch.testing.assert_close(rw, gw[start:start + n], rtol=0, atol=1e-10)
                torch.testing.assert_close(rx, gx[half] * (WORLD if correction else 1), rtol=0, atol=1e-10)
                for a, b in zip(state, _state(full, name)):  # the same running statistics on every rank
                    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
                for key in set(full.stats) - {"sampled_classes"}:
                    torch.testing.assert_close(stats[key], full.stats[key], rtol=0, atol=1e-10, msg=f"{name} {key}")
