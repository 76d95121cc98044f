"""torchrun + DistributedDataParallel, as seams the trainer and runner use; one process needs none of it.

``torchrun --nproc_per_node N -m mlcompare run NAME`` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set; :func:`from_env` joins them (NCCL on GPUs, gloo on CPUs). Nothing happens at import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Context:
    """Where this process stands: ``rank`` of ``world_size`` (1 and 0 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory, logs and the report."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def broadcast_object(self, obj: object) -> object:
        """Rank 0's ``obj`` on every rank (e.g. an error message, so that all ranks stop alike)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def from_env(device: torch.device) -> Context:
    """Join the process group that torchrun describes in the environment; a plain run gets ``Context()``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Context()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":  # NCCL's object collectives use the current device: this rank's own GPU
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, local_rank)



def leave() -> None:
    """Leave the process group :func:`from_env` joined, if it joined one (a plain run has none): called once
    the command is done, failed or interrupted, so that torchrun's processes exit cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_keep_grad(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Every rank's ``x`` concatenated in rank order; only this rank's slice carries gradient.

    A miner on the gathered embeddings sees ``world_size`` times the negatives. Each rank's loss
    then equals the global-batch loss, and its gradient reaches only its own images; summed over
    ranks that is the global gradient, which is why the trainer scales such a loss by
    ``world_size`` before DDP averages the ranks' gradients.
    """
    if not ctx.active:
        return x
    parts = [torch.empty_like(x) for _ in range(ctx.world_size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[ctx.rank] = x
    return torch.cat(parts)


def average_gradients(params: list[torch.nn.Parameter], ctx: Context, *, divide: int = 1) -> None:
    """All-reduce ``params``' gradients to their mean over ranks, divided by ``divide`` (the loss's own
    parameters, which are not inside the DDP-wrapped backbone)."""
    if not ctx.active:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(ctx.world_size * divide)


def share(n: int, ctx: Context) -> slice:
    """This rank's contiguous share of ``n`` rows (shares differ in size by at most one)."""
    return slice(ctx.rank * n // ctx.world_size, (ctx.rank + 1) * n // ctx.world_size)


def gather_rows(x: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Every rank's rows of ``x`` (CPU tensors, sizes may differ) concatenated in rank order, on every rank."""
    if not ctx.active:
        return x
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, x)
    return torch.cat(parts)


def knn_over_ranks(ctx: Context, device: str = "cpu") -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """:func:`evaluations.knn` with the references split over the ranks: each rank searches every
    query in its contiguous share of the references (on faiss ``device``: a rank's own GPU, or the
    CPU), and the shares' top-k, gathered on every rank, are merged by :func:`evaluations.merge_knn`,
    which is exact. All ranks must call it together, with the same arguments."""
    import evaluations

    def search(queries: Any, references: Any, k: int, *, metric: str = "cosine",
               exclude_self: bool = False) -> tuple[np.ndarray, np.ndarray]:
        wanted = k + 1 if exclude_self else k  # leave-one-out: drop each query's own row after the merge
        part = share(len(references), ctx)
        size = part.stop - part.start
        found = (np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64))
        if size:
            scores, index = evaluations.knn(queries, references[part], min(wanted, size), metric=metric, device=device)
            found = (scores, index + part.start)
        parts: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(parts, found)
        scores, index = evaluations.merge_knn([p for p in parts if p[0].shape[1]], wanted, metric=metric)
        if exclude_self:
            is_self = index == np.arange(len(queries))[:, None]
            order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
            scores, index = np.take_along_axis(scores, order, axis=1), np.take_along_axis(index, order, axis=1)
        return scores, index

    return search
