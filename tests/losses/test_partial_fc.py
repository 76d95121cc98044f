"""Partial FC: equal to the full margin loss at sample_rate=1, sampling keeps the positives, sharding.

References: the registry's ArcFace / CosFace / Combined with the same weights (one rank), a
cross-entropy written out over the sampled columns (sampling), and the unsharded loss against
2 gloo processes (sharding, spawned here).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mlcompare.losses as L
from mlcompare.losses.partial_fc import parameter_bytes, sample_classes, shard_range

C, D, B = 11, 5, 9


def _inputs(seed: int = 0, classes: int = C, batch: int = B):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, D, generator=g, dtype=torch.float64) * 3
    w = torch.randn(classes, D, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=g)
    return x, w, y


def _value_and_grads(loss, weight, x, y):
    loss = loss.double()
    with torch.no_grad():
        loss.weight.copy_(weight)
    x = x.clone().requires_grad_(True)
    value = loss(x, y)
    gx, gw = torch.autograd.grad(value, (x, loss.weight))
    return value.detach(), gx, gw


@pytest.mark.parametrize("margin, params, full_name, full_params", [
    ("arcface", {"s": 64.0, "m": 0.5}, "arcface", {"s": 64.0, "m": 0.5}),
    ("arcface", {"s": 30.0, "m": 0.3, "easy_margin": True}, "arcface", {"s": 30.0, "m": 0.3, "easy_margin": True}),
    ("cosface", {"s": 30.0, "m": 0.35}, "cosface", {"s": 30.0, "m": 0.35}),
    ("combined", {"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}, "combined", {"s": 64.0, "m1": 1.0, "m2": 0.3, "m3": 0.2}),
    ("combined", {"s": 16.0, "m1": 1.35, "m2": 0.0, "m3": 0.0}, "combined", {"s": 16.0, "m1": 1.35, "m2": 0.0, "m3": 0.0}),
])
def test_sample_rate_one_equals_full_loss_exactly(margin, params, full_name, full_params):
    x, w, y = _inputs()
    ours = _value_and_grads(L.get("partial_fc", num_classes=C, embedding_dim=D, margin=margin, **params), w, x, y)
    full = _value_and_grads(L.get(full_name, num_classes=C, embedding_dim=D, **full_params), w, x, y)
    for a, b in zip(ours, full):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_defaults_match_the_paper_margins():
    assert L.get("partial_fc", num_classes=C, embedding_dim=D).margin_logits.m == 0.5
    assert L.get("partial_fc", num_classes=C, embedding_dim=D, margin="cosface").margin_logits.m == 0.35
    comb = L.get("partial_fc", num_classes=C, embedding_dim=D, margin="combined").margin_logits
    assert (comb.m1, comb.m2, comb.m3) == (1.0, 0.3, 0.2)


def _written_sampled_arcface(x, w, y, index, s, m):
    """CE over the columns ``index`` only, ArcFace target by acos, written out."""
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(w[index], dim=1).t()
    col = torch.tensor([int((index == t).nonzero()) for t in y])
    logits = s * cos.clone()
    theta = torch.acos(cos[torch.arange(len(y)), col])
    logits[torch.arange(len(y)), col] = s * torch.cos(theta + m)
    target = logits[torch.arange(len(y)), col]
    return (torch.logsumexp(logits, dim=1) - target).mean()


def test_sampled_logits_keep_positives_and_count():
    classes, rate = 40, 0.25
    x, w, y = _inputs(1, classes=classes, batch=6)
    loss = L.get("partial_fc", num_classes=classes, embedding_dim=D, sample_rate=rate, s=10.0, m=0.4).double()
    with torch.no_grad():
        loss.weight.copy_(w)
    torch.manual_seed(3)
    value = loss(x, y)
    torch.manual_seed(3)  # the same draw, to know which classes the loss saw
    index, mapped = sample_classes(y, classes, int(rate * classes))
    assert index.numel() == int(rate * classes) == int(loss.stats["sampled_classes"])
    assert set(y.tolist()) <= set(index.tolist())
    assert torch.equal(index, index.sort().values) and index.unique().numel() == index.numel()
    assert torch.equal(index[mapped], y)
    torch.testing.assert_close(value, _written_sampled_arcface(x, w, y, index, 10.0, 0.4))
    value.backward()
    unseen = torch.ones(classes, dtype=torch.bool)
    unseen[index] = False
    assert (loss.weight.grad[unseen] == 0).all() and (loss.weight.grad[index].abs().sum(1) > 0).all()


def test_sampling_many_draws():
    """Positives in every draw; each negative drawn with probability (S - P) / (C - P)."""
    classes, num_sample, draws = 30, 10, 400
    y = torch.tensor([3, 3, 17, 29])
    torch.manual_seed(0)
    counts = torch.zeros(classes)
    for _ in range(draws):
        index, mapped = sample_classes(y, classes, num_sample)
        assert index.numel() == num_sample and {3, 17, 29} <= set(index.tolist())
        assert torch.equal(index[mapped], y)
        counts[index] += 1
    negatives = torch.tensor([c for c in range(classes) if c not in (3, 17, 29)])
    expected = draws * (num_sample - 3) / (classes - 3)  # ~104, binomial sd ~9
    assert (counts[negatives] - expected).abs().max() < 5 * math.sqrt(expected)


def test_more_positives_than_samples_uses_positives_only():
    y = torch.tensor([0, 5, 9, 2, 5])
    index, mapped = sample_classes(y, 10, 2)
    assert index.tolist() == [0, 2, 5, 9] and torch.equal(index[mapped], y)


def test_eval_mode_uses_every_class():
    x, w, y = _inputs(2)
    loss = L.get("partial_fc", num_classes=C, embedding_dim=D, sample_rate=0.3, s=64.0, m=0.5).eval()
    full = L.get("arcface", num_classes=C, embedding_dim=D, s=64.0, m=0.5).eval()
    torch.testing.assert_close(_value_and_grads(loss, w, x, y)[0], _value_and_grads(full, w, x, y)[0], rtol=0, atol=0)


def test_shards_cover_the_classes_and_memory_figures():
    for classes, world in [(10, 4), (1_000_000, 8), (7, 7), (100_003, 3)]:
        ranges = [shard_range(classes, r, world) for r in range(world)]
        assert ranges[0][0] == 0 and sum(n for _, n in ranges) == classes
        assert all(a + n == b for (a, n), (b, _) in zip(ranges, ranges[1:]))
        assert max(n for _, n in ranges) - min(n for _, n in ranges) <= 1
    assert parameter_bytes(1_000_000, 512, world_size=1) == 1_000_000 * 512 * 4  # 2.048 GB
    assert parameter_bytes(1_000_000, 512, world_size=8) == 125_000 * 512 * 4  # 256 MB
    assert parameter_bytes(1_000_000, 512, world_size=8, bytes_per_value=2) == 128_000_000
    loss = L.get("partial_fc", num_classes=10, embedding_dim=3, rank=3, world_size=4)
    assert tuple(loss.weight.shape) == (2, 3) and loss.class_start == 8
    assert loss.weight.numel() * 4 == parameter_bytes(10, 3, world_size=4, rank=3)


@pytest.mark.parametrize("params, message", [
    ({"margin": "lsoftmax"}, "margin must be one of arcface, cosface, combined"),  # a loss, not a margin
    ({"sample_rate": 0.0}, r"sample_rate .* must be in \(0, 1\]"),
    ({"sample_rate": 1.5}, r"sample_rate .* must be in \(0, 1\]"),
    ({"rank": 2, "world_size": 2}, r"rank must be an integer in \[0, world_size - 1 = 1\]"),
    ({"world_size": 0}, "world_size must be an integer"),
    ({"margin": "combined", "m": 0.5}, "m is not a parameter of margin='combined'"),
    ({"margin": "arcface", "m2": 0.5}, "m2 is not a parameter of margin='arcface'; it takes m, easy_margin"),
    ({"margin": "arcface", "m": 2.0}, r"m \(ArcFace angular margin, radians\) must be in"),
    ({"margin": "cosface", "m": 1.0}, r"m \(CosFace cosine margin\) must be in"),
    ({"margin": "combined", "m1": 0.5}, "m1 .* must be >= 1"),
    ({"unknown": 1}, "loss 'partial_fc' has no parameter 'unknown'"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ValueError, match=message) as info:
        L.get("partial_fc", num_classes=C, embedding_dim=D, **params)
    assert "\n" not in str(info.value)


def test_world_size_without_process_group_is_a_clear_error():
    loss = L.get("partial_fc", num_classes=C, embedding_dim=D, rank=0, world_size=2)
    with pytest.raises(ValueError, match="needs an initialised torch.distributed process group"):
        loss(torch.randn(4, D), torch.tensor([0, 1, 2, 3]))


# ---- two gloo processes -------------------------------------------------------------------

WORLD, GLOBAL_B = 2, 8


def _worker(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    try:
        x, w, y = _inputs(5, classes=C, batch=GLOBAL_B)
        y[:3] = torch.tensor([0, 1, 10])  # classes on both shards
        local = slice(rank * GLOBAL_B // WORLD, (rank + 1) * GLOBAL_B // WORLD)
        out = {}
        for margin, params in [("arcface", {"m": 0.5}), ("cosface", {"m": 0.35})]:
            for correction in (False, True):
                loss = L.get("partial_fc", num_classes=C, embedding_dim=D, margin=margin, s=20.0, rank=rank, world_size=WORLD,
                                 ddp_grad_correction=correction, **params)
                start, n = loss.class_start, loss.num_local
                out[margin, correction] = _value_and_grads(loss, w[start:start + n], x[local], y[local]) + (
                    loss.stats["theta_target"], loss.stats["theta_other"])
        sampled = L.get("partial_fc", num_classes=C, embedding_dim=D, sample_rate=0.5, rank=rank, world_size=WORLD)
        torch.manual_seed(rank)
        sampled(x[local].float(), y[local])
        out["sampled"] = int(sampled.stats["sampled_classes"]), sampled.num_sample, sampled.num_local
        torch.save(out, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_equal_the_unsharded_loss(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path),), nprocs=WORLD, join=True)
    x, w, y = _inputs(5, classes=C, batch=GLOBAL_B)
    y[:3] = torch.tensor([0, 1, 10])
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name, params in [("arcface", {"m": 0.5}), ("cosface", {"m": 0.35})]:
        full = L.get(name, num_classes=C, embedding_dim=D, s=20.0, **params)
        value, gx, gw = _value_and_grads(full, w, x, y)
        for correction in (False, True):
            for rank, res in enumerate(results):
                v, rx, rw, theta_t, theta_o = res[name, correction]
                start, n = shard_range(C, rank, WORLD)
                half = slice(rank * GLOBAL_B // WORLD, (rank + 1) * GLOBAL_B // WORLD)
                torch.testing.assert_close(v, value, rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(rw, gw[start:start + n], rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(rx, gx[half] * (WORLD if correction else 1), rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(theta_t, full.stats["theta_target"], rtol=1e-10, atol=1e-12)
                torch.testing.assert_close(theta_o, full.stats["theta_other"], rtol=1e-10, atol=1e-12)
    for rank, res in enumerate(results):
        count, num_sample, num_local = res["sampled"]
        assert num_local == shard_range(C, rank, WORLD)[1] and num_sample == max(1, int(0.5 * num_local))
        # the batch's positives on this shard may exceed num_sample; then they are all kept
        start = shard_range(C, rank, WORLD)[0]
        positives = {int(c) for c in y if start <= c < start + num_local}
        assert count == max(num_sample, len(positives))
