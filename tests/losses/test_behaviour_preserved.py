"""The losses compute what they computed before the margin contract (one margin-logits object per
margin, shared by the margin softmax and Partial FC) and the shared classifier and pair-loss bases.

``behaviour_before.json`` was written by ``python -m tests.losses.test_behaviour_preserved`` with the
code of the commit before that change (it is data, not recomputed here). It holds, per registered loss
(and Partial FC with every margin it took, at sample rates 1 and 0.5), two training-mode steps on
fixed inputs: the loss, the gradients' sums and every logged statistic in logging order; the
``mlcompare losses`` listing and each loss's description and search space; and a tiny comparison's
``results.csv`` metrics and ``history.csv`` (digits, arcface, cosface, adaface, partial_fc with the
cosface margin, batch-hard triplet). Everything runs on the CPU in float32 with fixed seeds, and is
compared exactly: the same operations in the same order give the same bits.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch

from mlcompare import cli
from mlcompare import losses as L
from mlcompare.losses import catalog

# recorded with one torch thread (tests/conftest.py one_torch_thread says why)
pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIXTURE = Path(__file__).parent / "behaviour_before.json"
C, D, B = 6, 16, 12
# Partial FC's line in `mlcompare losses`: it listed the union of every margin's keywords (m=None, m1=None, ...);
# it now lists its own defaults, the margin's being the margin's.
DELIBERATE_LISTING = {"partial_fc"}
# Docstrings that named the classes merged into one margin object (AdaFaceLogits, ...), Partial FC's
# margin parameters, or MarginHead: same header line (name, family, module.Class), updated text.
# Issue 24 widened the ranges reports/tuned ended at (s down to 4, CosFace m to 0.8, soft margin to 2).
DELIBERATE_SEARCH = {"arcface": {"s": ([8.0, 128.0, True, False], [4.0, 128.0, True, False])},
                     "cosface": {"s": ([8.0, 128.0, True, False], [4.0, 128.0, True, False]),
                                 "m": ([0.05, 0.6, False, False], [0.05, 0.8, False, False])},
                     "triplet_soft": {"margin": ([0.0, 0.5, False, False], [0.0, 2.0, False, False])}}
DELIBERATE_DESCRIBE = {"adaface", "curricularface", "magface", "partial_fc", "sphereface2", "x2softmax"}

VARIANTS = {  # name -> (loss, params): the defaults of every registered loss, and settings that take other branches
    "arcface-easy": ("arcface", {"easy_margin": True, "m": 0.6}),
    "combined-sphere": ("combined", {"m1": 2.0, "m2": 0.1, "m3": 0.1}),
    "sphereface-s": ("sphereface", {"s": {"kind": "learnable", "init": 16.0}, "m": 3}),
    "normface-learnable": ("normface", {"s": {"kind": "learnable", "init": 8.0}}),
    "cosface-heated": ("cosface", {"s": {"kind": "heated_up", "start": 8.0, "end": 32.0, "warmup": 0.5}}),
    "magface-paper": ("magface", {"norm_gain": False, "easy_margin": True}),
    "subcenter-drop": ("subcenter_arcface", {"drop_threshold": 1.0, "drop_start": 0.0}),
    "margin-global": ("margin", {"beta_per_class": False, "nu": 0.1}),
    "contrastive-sq": ("contrastive", {"squared": True, "reduction": "all"}),
}
PFC_MARGINS = {
    "arcface": {}, "cosface": {}, "combined": {}, "adaface": {}, "curricularface": {}, "elasticface_arc": {},
    "elasticface_cos": {}, "magface": {"norm_gain": False}, "x2softmax": {},
}
TINY = """
description = "tiny behaviour check"
[data]
train = "digits"
test_fraction = 0.4
size = 16
verification_pairs = 400
[backbone]
widths = [8, 16]
blocks = [1, 1]
embedding_dim = 16
[train]
steps = 8
p = 4
k = 4
warmup_steps = 2
log_every = 4
checkpoint_every = 8
[[methods]]
name = "arcface"
loss = "arcface"
[[methods]]
name = "cosface"
loss = "cosface"
[[methods]]
name = "adaface"
loss = "adaface"
[[methods]]
name = "pfc-cosface"
loss = "partial_fc"
params = { margin = "cosface", sample_rate = 0.5 }
[[methods]]
name = "triplet-bh"
loss = "triplet"
miner = "batch_hard"
params = { margin = 0.2 }
"""
TIMING = {"train_seconds", "images_per_s"}


def cases() -> dict[str, tuple[str, dict]]:
    found = {name: (name, {}) for name in sorted(L.REGISTRY)} | VARIANTS
    for margin, params in PFC_MARGINS.items():
        for rate in (1.0, 0.5):
            found[f"partial_fc-{margin}-{rate}"] = ("partial_fc", {"margin": margin, "sample_rate": rate} | params)
    return found


def two_steps(name: str, params: dict) -> dict:
    """Two training-mode forwards and backwards on fixed inputs (no optimiser step; running statistics move)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, D, generator=g) * 4.0  # norms around 16: AdaFace's and MagFace's working range
    y = torch.arange(C).repeat(B // C)
    counts = torch.tensor([2, 2, 5, 5, 5, 5])
    loss = L.get(name, num_classes=C, embedding_dim=D, class_counts=counts, **params)
    loss.train()
    out: dict = {"steps": []}
    for step in range(2):
        loss.set_progress(step, 4)
        loss.zero_grad()
        xg = x.clone().requires_grad_(True)
        value = loss(xg, y)
        value.backward()
        grads = {n: [float(p.grad.sum()), float(p.grad.abs().sum())] for n, p in sorted(loss.named_parameters())
                 if p.grad is not None}
        out["steps"].append({"loss": float(value.detach()), "grad_x": [float(xg.grad.sum()), float(xg.grad.abs().sum())],
                             "grads": list(grads.values()),
                             "stats": [[k, v.double().tolist()] for k, v in loss.stats.items()]})
    # the scale is now the margin's (named "margin_logits.scale..."): the names are compared without that prefix
    out["buffers"] = {n.removeprefix("margin_logits."): b.double().sum().item() for n, b in sorted(loss.named_buffers())}
    return out


def listing() -> dict:
    return {"lines": {line.split()[0]: line for line in catalog.lines()},
            "describe": {name: catalog.describe(name) for name in sorted(L.REGISTRY)},
            "search_space": {name: {k: [d.low, d.high, d.log, d.integer] for k, d in L.REGISTRY[name].search_space.items()}
                             for name in sorted(L.REGISTRY)},
            "shown_params": {name: list(L.REGISTRY[name].shown_params) for name in sorted(L.REGISTRY)},
            "family": {name: L.family(name) for name in sorted(L.REGISTRY)}}


def tiny_run(root: Path) -> dict:
    (root / "tiny.toml").write_text(TINY)
    assert cli.main(["run", str(root / "tiny.toml"), "--out", str(root / "run"), "--no-progress"]) == 0
    with open(root / "run" / "results.csv") as f:
        results = [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
    with open(root / "run" / "history.csv") as f:
        history = [list(row) for row in csv.reader(f)]
    return {"results": results, "history": history}


def record(root: Path) -> dict:
    return {"losses": {case: two_steps(*args) for case, args in cases().items()}, "listing": listing(),
            "run": tiny_run(root)}


@pytest.fixture(scope="module")
def before() -> dict:
    return json.loads(FIXTURE.read_text())


@pytest.mark.parametrize("case", sorted(cases()))
def test_every_loss_computes_the_same_bits(before, case):
    name, params = cases()[case]
    was = before["losses"][case]
    was["buffers"] = {n.removeprefix("margin_logits."): v for n, v in was["buffers"].items()}
    assert json.loads(json.dumps(two_steps(name, params))) == was


def test_listing_descriptions_and_search_spaces_are_unchanged(before):
    now = json.loads(json.dumps(listing()))
    was = before["listing"]
    for name in DELIBERATE_LISTING:
        assert now["lines"].pop(name) != was["lines"].pop(name)
    for name in DELIBERATE_DESCRIBE:
        new, old = now["describe"].pop(name), was["describe"].pop(name)
        assert new != old and new.splitlines()[0] == old.splitlines()[0]
    for name, dims in DELIBERATE_SEARCH.items():
        for dim, (old, new) in dims.items():
            assert was["search_space"][name][dim] == old and now["search_space"][name][dim] == new
            was["search_space"][name][dim] = new
    assert now == was


def test_a_tiny_comparison_gives_the_same_results_and_history(before, tmp_path):
    assert json.loads(json.dumps(tiny_run(tmp_path))) == before["run"]


if __name__ == "__main__":  # record the fixture (run with the code before a change), on one thread as the tests run
    import tempfile

    import torch

    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        FIXTURE.write_text(json.dumps(record(Path(tmp)), indent=1) + "\n")
    print(f"wrote {FIXTURE}", file=sys.stderr)
