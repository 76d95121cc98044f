"""torchrun's multi-process training on CPU (gloo): the global batch, the gradient through gathered
embeddings, and a whole comparison run by two processes with one run directory written by rank 0."""
import json
import os
import socket

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import miners
from mlcompare import losses
from mlcompare.data.sampler import PKSampler
from mlcompare.train.distributed import Context, average_gradients, gather_keep_grad


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))


def test_ranks_slices_make_the_single_process_batch():
    labels = torch.arange(12).repeat_interleave(5)
    sampler = PKSampler(labels, p=4, k=3, seed=0)
    batch = sampler.batch(3)
    world = 2
    parts = [batch[r * 12 // world:(r + 1) * 12 // world] for r in range(world)]
    assert torch.equal(torch.cat(parts), batch)
    for part in parts:  # whole identities on each rank
        assert len(set(labels[part].tolist())) == 2


def _gradient_worker(rank: int, world: int, port: int, x: torch.Tensor, y: torch.Tensor, out: dict) -> None:
    _env(rank, world, port)
    dist.init_process_group("gloo")
    ctx = Context(rank, world, rank)
    torch.manual_seed(0)
    proj = torch.nn.Linear(x.shape[1], 8)
    loss = losses.get("margin", num_classes=4, embedding_dim=8, miner=miners.get("batch_hard"))
    n = len(x) // world
    local = slice(rank * n, (rank + 1) * n)
    value = loss(gather_keep_grad(proj(x[local]), ctx), gather_keep_grad(y[local], ctx))
    (value * world).backward()
    # what DDP does for the backbone, and the trainer for the loss's own parameters
    average_gradients(list(proj.parameters()), ctx)
    average_gradients(list(loss.parameters()), ctx, divide=world)
    if rank == 0:
        out["value"] = float(value)
        out["grads"] = [p.grad.clone() for p in list(proj.parameters()) + list(loss.parameters())]
    dist.destroy_process_group()


def test_gathered_pair_loss_gives_the_global_batch_gradient():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 6, generator=g)
    y = torch.arange(4).repeat_interleave(4)
    torch.manual_seed(0)
    proj = torch.nn.Linear(6, 8)
    loss = losses.get("margin", num_classes=4, embedding_dim=8, miner=miners.get("batch_hard"))
    value = loss(proj(x), y)
    value.backward()
    expected = [p.grad for p in list(proj.parameters()) + list(loss.parameters())]
    out = mp.Manager().dict()
    mp.spawn(_gradient_worker, args=(2, free_port(), x, y, out), nprocs=2, join=True)
    assert out["value"] == pytest.approx(float(value.detach()), rel=1e-6)
    for got, want in zip(out["grads"], expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def _run_worker(rank: int, world: int, port: int, toml: str, run_dir: str) -> None:
    _env(rank, world, port)
    from mlcompare.cli import main

    assert main(["run", toml, "--out", run_dir, "--no-progress", "--steps", "4"]) == 0


def test_two_processes_run_a_comparison_and_rank0_writes_it(tiny, tmp_path):
    """Two processes write one run directory, and score as one process does: same batches, global
    BatchNorm, gathered mining, evaluation split over the ranks. (SGD: see the single-step test on AdamW.)"""
    tiny.write_text(tiny.read_text().replace("[train]\n", '[train]\noptimizer = "sgd"\nlr = 0.05\n'))
    out = tmp_path / "run"
    mp.spawn(_run_worker, args=(2, free_port(), str(tiny), str(out)), nprocs=2, join=True)
    results = pd.read_csv(out / "results.csv")
    assert results.method.tolist() == ["raw pixels", "softmax", "triplet-bh"]
    assert (results.status == "ok").all() and results.accuracy.between(0, 1).all()
    from mlcompare.cli import main

    assert main(["run", str(tiny), "--out", str(tmp_path / "single"), "--no-progress", "--steps", "4"]) == 0
    single = pd.read_csv(tmp_path / "single" / "results.csv")
    metrics = ["accuracy", "auc", "eer", "rank_1", "map_at_r", "precision_at_1"]
    assert (results[metrics] - single[metrics]).abs().max().max() < 1e-3
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    state = torch.load(out / "checkpoints" / "softmax-s0.pt", weights_only=False)
    assert state["step"] == 4 and len(state["rng_ranks"]) == 2
    assert (out / "report.html").exists() and "2 torchrun processes" in (out / "report.md").read_text()


def test_partial_fc_trains_sharded_over_two_processes_and_checkpoints_each_shard(tiny, tmp_path):
    tiny.write_text(tiny.read_text() + '[[methods]]\nname = "pfc"\nloss = "partial_fc"\nparams = { sample_rate = 0.5 }\n')
    out = tmp_path / "run"
    mp.spawn(_run_worker, args=(2, free_port(), str(tiny), str(out)), nprocs=2, join=True)
    results = pd.read_csv(out / "results.csv").set_index("method")
    assert results.loc["pfc", "status"] == "ok"
    state = torch.load(out / "checkpoints" / "pfc-s0.pt", weights_only=False)
    shards = [s["loss"]["weight"] for s in state["shards"]]
    # 6 training identities (digits, 40% held out) split 3 + 3 over the ranks, each rank its own rows
    assert [len(w) for w in shards] == [3, 3] and not torch.equal(shards[0], shards[1])


def _batchnorm_worker(rank: int, world: int, port: int, x: torch.Tensor, out: dict) -> None:
    from mlcompare.train.sync_batchnorm import GlobalBatchNorm

    _env(rank, world, port)
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    bn = GlobalBatchNorm(x.shape[1])
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    n = len(x) // world
    part = x[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    y = bn(part)
    (y * torch.arange(y.numel(), dtype=y.dtype).view_as(y).sin()).sum().backward()
    average_gradients(list(bn.parameters()), Context(rank, world, rank), divide=1)
    out[rank] = {"y": y.detach(), "grad": part.grad, "params": [p.grad * world for p in bn.parameters()],
                 "running": (bn.running_mean.clone(), bn.running_var.clone())}
    dist.destroy_process_group()


# Mean 1000 x std: float32 inputs carry 6e-5 of rounding there (hence atol 1e-3), while E[x^2] - E[x]^2
# in float32 would be off by ~3% of the variance.
@pytest.mark.parametrize("shape, scale, offset, atol", [((12, 5), 3.0, 1.0, 1e-5), ((8, 3, 4, 4), 3.0, 1.0, 1e-5),
                                                         ((16, 4), 1.0, 1000.0, 1e-3)])
def test_global_batchnorm_over_two_ranks_equals_batchnorm_on_the_whole_batch(shape, scale, offset, atol):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * scale + offset
    torch.manual_seed(0)
    ref = torch.nn.BatchNorm1d(shape[1]) if len(shape) == 2 else torch.nn.BatchNorm2d(shape[1])
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5)
        ref.bias.uniform_(-0.5, 0.5)
    whole = x.clone().requires_grad_(True)
    y = ref(whole)
    # the same per-element weights as the workers use, on each rank's half
    half = len(x) // 2
    w = torch.cat([torch.arange(y[:half].numel(), dtype=y.dtype).view_as(y[:half]).sin()] * 2)
    (y * w).sum().backward()
    out = mp.Manager().dict()
    mp.spawn(_batchnorm_worker, args=(2, free_port(), x, out), nprocs=2, join=True)
    torch.testing.assert_close(torch.cat([out[0]["y"], out[1]["y"]]), y.detach(), rtol=1e-5, atol=atol)
    torch.testing.assert_close(torch.cat([out[0]["grad"], out[1]["grad"]]), whole.grad, rtol=1e-4, atol=10 * atol)
    for got, want in zip(out[0]["params"], [ref.weight.grad, ref.bias.grad]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=10 * atol)
    torch.testing.assert_close(out[0]["running"][0], ref.running_mean)
    torch.testing.assert_close(out[1]["running"][1], ref.running_var, rtol=atol, atol=1e-5)


def _train_step_worker(rank: int, world: int, port: int, loss_name: str, data, cfg, out: dict,
                       backbone: str = "") -> None:
    from mlcompare.train.distributed import from_env

    _env(rank, world, port)
    torch.set_num_threads(1)
    ctx = from_env(torch.device("cpu"))
    out[rank] = _one_train_step(loss_name, data, cfg, ctx, backbone=backbone)
    dist.destroy_process_group()


def _one_train_step(loss_name: str, data, cfg, ctx=Context(), *, backbone: str = "") -> dict:
    from mlcompare.backbones import ResNetFace, build_backbone
    from mlcompare.config.comparison import BackboneConfig
    from mlcompare.train.trainer import train

    torch.manual_seed(0)
    if backbone:  # a named one at its own widths, on the same tiny images
        model = build_backbone(BackboneConfig(name=backbone), image_size=16, embedding_dim=16)
    else:
        model = ResNetFace(image_size=16, widths=(8, 8), blocks=(1, 1), embedding_dim=16)
    miner = miners.get("batch_hard") if loss_name == "triplet" else None
    loss = losses.get(loss_name, num_classes=data.num_identities, embedding_dim=16, **({"miner": miner} if miner else {}))
    model.double()  # the step compared in float64: see test_a_step_on_two_ranks_is_the_single_process_step
    loss.double()
    result = train(model, loss, data, cfg, seed=3, device=torch.device("cpu"), ctx=ctx)
    return {"loss": result.history[0]["loss"], "model": {k: v.clone() for k, v in model.state_dict().items()}}


@pytest.mark.parametrize("loss_name, sync, backbone", [("softmax", True, ""), ("triplet", True, ""), ("softmax", False, ""),
                                                       ("softmax", True, "iresnet18"), ("softmax", True, "mobilefacenet")])
def test_a_step_on_two_ranks_is_the_single_process_step(loss_name, sync, backbone):
    """With BatchNorm over the global batch (the default) two ranks take the single-process step;
    without it each rank normalises with half the batch and the step differs."""
    import dataclasses

    from mlcompare import data as datasets
    from mlcompare.config.comparison import TrainConfig

    data = datasets.load("digits", size=16)
    # SGD: Adam's first step is lr * sign(g), which turns rounding noise on gradients that are zero in
    # exact arithmetic (the bias of a BatchNorm that feeds another BatchNorm) into +-lr.
    cfg = dataclasses.replace(TrainConfig(), steps=2, p=4, k=4, warmup_steps=1, log_every=1, eval_every=0,
                              checkpoint_every=100, sync_batchnorm=sync, optimizer="sgd", lr=0.1)
    # The step is compared in float64 (model and loss in double precision; GlobalBatchNorm and the trainer keep
    # it). Two ranks and one process add the same numbers in different orders (BatchNorm's statistics over
    # ranks, DDP's gradient all-reduce, kernels split by thread), so they differ by rounding alone, which two
    # SGD steps through a deep net of BatchNorms amplify: in float32 to 1.5e-4 for MobileFaceNet on a 2-core
    # EPYC (under 1e-5 where the test was written), about 1e3 x float32's epsilon 1.2e-7. The same
    # amplification of float64's epsilon 2.2e-16 is ~3e-13 (measured: 7e-15), so 1e-9 holds on any CPU with
    # 1e4 to spare, while a step that is not the single-process one (BatchNorm over half the batch, below)
    # differs by more than 1e-3.
    # The ranks run one thread each, and so does the reference: fewer ways for the sums to differ.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = _one_train_step(loss_name, data, cfg, backbone=backbone)
    finally:
        torch.set_num_threads(threads)
    out = mp.Manager().dict()
    mp.spawn(_train_step_worker, args=(2, free_port(), loss_name, data, cfg, out, backbone), nprocs=2, join=True)
    got = out[0]
    diffs = [float((got["model"][k].double() - v.double()).abs().max()) for k, v in want["model"].items()]
    if sync:
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)
        assert max(diffs) < 1e-9, max(diffs)
    else:
        assert max(diffs) > 1e-3, max(diffs)


def test_two_nodes_through_torchruns_own_flags(tiny, tmp_path):
    """Two torchrun launchers, one per "node" (here both on localhost), as the README's two-node
    command: one run of world size 2, written by rank 0 only."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
                        "OMP_NUM_THREADS": "1"}
    port = free_port()

    def node(rank: int) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
             "--nproc_per_node", "1", "--master_addr", "127.0.0.1", "--master_port", str(port),
             "-m", "mlcompare", "run", str(tiny), "--out", str(tmp_path / f"node{rank}" / "run"), "--steps", "3",
             "--no-progress"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    nodes = [node(0), node(1)]
    logs = [p.communicate(timeout=300)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], logs
    assert json.loads((tmp_path / "node0" / "run" / "config.json").read_text())["world_size"] == 2
    assert (pd.read_csv(tmp_path / "node0" / "run" / "results.csv").status == "ok").all()
    assert not (tmp_path / "node1").exists()
