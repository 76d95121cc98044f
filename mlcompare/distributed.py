"""torchrun + DistributedDataParallel, as seams the trainer and runner use; one process needs none of it.

``torchrun --nproc_per_node N -m mlcompare run NAME`` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set; :func:`from_env` joins them (NCCL on GPUs, gloo on CPUs). Nothing happens at import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

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
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(rank, world_size, local_rank)


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
