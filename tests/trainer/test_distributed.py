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
from mlcompare.distributed import Context, average_gradients, gather_keep_grad


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
    out = tmp_path / "run"
    mp.spawn(_run_worker, args=(2, free_port(), str(tiny), str(out)), nprocs=2, join=True)
    results = pd.read_csv(out / "results.csv")
    assert results.method.tolist() == ["raw pixels", "softmax", "triplet-bh"]
    assert (results.status == "ok").all() and results.accuracy.between(0, 1).all()
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    state = torch.load(out / "checkpoints" / "softmax-s0.pt", weights_only=False)
    assert state["step"] == 4 and len(state["rng_ranks"]) == 2
    assert (out / "report.html").exists()


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
