"""One training loop for every loss, readable top to bottom.

Every method of a comparison gets the same backbone initialisation (per seed), the same
P x K batches (a function of seed and step), the same optimiser and warm-up + cosine schedule,
and the same number of steps. Only the loss (and its miner) differs.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from miners import NonFiniteEmbeddings
from mlcompare.backbones import autocast, to_input
from mlcompare.config import limits
from mlcompare.config.comparison import TrainConfig
from mlcompare.config.search_space import Dim
from mlcompare.data.augment import Augmentation
from mlcompare.data.facedata import FaceData
from mlcompare.data.sampler import PKSampler
from mlcompare.data.stored import loaded_batches
from mlcompare.errors import UserError
from mlcompare.files.checkpoints import load_checkpoint
from mlcompare.losses import Loss
from mlcompare.train.distributed import Context, average_gradients, gather_keep_grad, share
from mlcompare.train.sync_batchnorm import synchronise_batchnorm


class TrainingDiverged(RuntimeError):
    """The loss became NaN or inf: the method is marked failed and the comparison goes on."""


@dataclass
class TrainResult:
    steps: int
    seconds: float
    images_per_s: float
    history: list[dict[str, Any]] = field(default_factory=list)


# What `mlcompare tune` searches of the trainer's own setting (the loss declares its own): the learning
# rate and weight decay, and for a loss with parameters of its own (class weights, proxies) their
# learning rate, as MLRC tuned it per loss. lr reaches 3e-2: reports/tuned chose 0.005-0.008 against a
# maximum of 1e-2.
SEARCH_SPACE: dict[str, Dim] = {"lr": Dim(1e-4, 3e-2, log=True), "weight_decay": Dim(1e-6, 1e-2, log=True)}
LOSS_LR_SEARCH = Dim(1e-4, 1e-1, log=True)


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(backbone: list[nn.Parameter], head: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD or AdamW over the backbone's and the loss's own parameters (:meth:`Loss.head_parameters`,
    at ``cfg.loss_lr`` when set: margin-softmax heads and proxies often want a larger one), each a
    group of its own; the schedule scales every group alike. Weight decay on matrices and kernels only (not on biases, BN, a learnable
    scale or a ring radius, which decay would pull towards zero for no regularising benefit)."""
    groups = []
    for params, lr in ((backbone, cfg.lr), (head, cfg.loss_lr or cfg.lr)):
        groups.append({"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay, "lr": lr})
        groups.append({"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, "lr": lr})
    groups = [g for g in groups if g["params"]]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a checkpoint."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _global_loss(value: float, ctx: Context, device: torch.device, *, local: bool) -> float:
    """The global batch's loss: the mean over ranks of a ``local`` loss (each rank's own images),
    NaN on every rank when any rank's is not finite (so that all ranks stop together)."""
    if not ctx.active:
        return value
    finite = math.isfinite(value)
    both = torch.tensor([value if finite else 0.0, 0.0 if finite else 1.0], dtype=torch.float64,
                        device=device)  # NCCL: GPU tensors only; float64: the mean as exact as the float it logs
    torch.distributed.all_reduce(both)
    if both[1].item() > 0:
        return math.nan
    return float(both[0]) / ctx.world_size if local else value


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(model: nn.Module, loss: Loss, data: FaceData, cfg: TrainConfig, *, seed: int,
          device: torch.device, checkpoint: Path | None = None, resume: bool = False,
          on_step: Callable[[int, float], None] | None = None,
          validate: Callable[[], float] | None = None, ctx: Context = Context(), workers: int = 0,
          log: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train ``model`` with ``loss`` on ``data`` for ``cfg.steps`` steps.

    ``checkpoint`` (model, loss, optimiser, step, RNG state, history) is written atomically every
    ``cfg.checkpoint_every`` steps and at the end; with ``resume`` an existing one is continued.
    ``on_step(steps_done, loss)`` is called after each logged step (the progress bar).
    ``log(row)`` is called with each history row as it is recorded (TensorBoard).
    ``validate()`` (a held-out score, e.g. verification accuracy) is called every
    ``cfg.eval_every`` steps and at the end, logged as ``val_accuracy``; its time is not counted
    as training time, and it must not touch the RNG (embedding in eval mode does not).
    A NaN or inf loss is detected on the next logged step (checking every step would force a
    host-device synchronisation on GPUs).
    ``cfg.precision`` bf16/fp16 runs the backbone under autocast; the loss always gets float32
    embeddings and runs outside autocast (margins act on cosines near +-1, scales s ~ 64), and
    fp16 on CUDA scales the loss (``GradScaler``) so that small gradients do not underflow.
    ``cfg.compile`` runs the forward pass through ``torch.compile`` (parameters shared with ``model``).
    Under torchrun (``ctx.active``) each rank trains on its share of the P x K batch (P/world_size
    identities, so the global batch is the single-process batch of the same seed), the backbone is
    wrapped in DistributedDataParallel, a pair loss mines over embeddings gathered from every rank,
    and rank 0 alone writes checkpoints (with every rank's RNG state) and calls ``validate``; with
    ``cfg.sync_batchnorm`` BatchNorm normalises over the global batch, so that a step on N ranks is
    the single-process step (``model``'s BatchNorm layers are replaced in place).
    Images on disk (:class:`~mlcompare.data.stored.StoredImages`) are decoded by ``workers``
    DataLoader processes into pinned memory on CUDA, each rank only its own share of the batch.
    Raises :class:`TrainingDiverged` on a NaN or inf loss (on every rank alike).
    """
    sampler = PKSampler(data.labels, p=cfg.p, k=cfg.k, seed=seed)
    limits.check_batch_split(cfg.p, ctx.world_size, "train")
    local = share(sampler.batch_size, ctx)
    gathered = ctx.active and loss.family == "pair"
    # channels_last: about 2x faster convolutions on CPU here, and the tensor-core layout on GPUs.
    model.to(device, memory_format=torch.channels_last)
    if ctx.active and cfg.sync_batchnorm:  # before the optimiser is given the parameters
        model = synchronise_batchnorm(model, device)
    loss.to(device)
    head = loss.head_parameters()
    params = list(model.parameters()) + head
    optimizer = make_optimizer(list(model.parameters()), head, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=cfg.warmup_steps, total=cfg.steps))
    # A disabled scaler passes everything through; only fp16 on CUDA needs loss scaling.
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16" and device.type == "cuda")
    start, history, seconds = 0, [], 0.0
    if resume and checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, map_location=device)
        model.load_state_dict(state["model"])
        shards = state.get("shards", [])
        own = shards[ctx.rank] if len(shards) == ctx.world_size > 1 else state
        loss.load_state_dict(own["loss"])
        optimizer.load_state_dict(own["optimizer"])
        schedule.load_state_dict(state["schedule"])
        ranks = state.get("rng_ranks")
        _set_rng_state(ranks[ctx.rank] if ranks and len(ranks) == ctx.world_size else state["rng"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start, history, seconds = state["step"], state["history"], state["seconds"]
    # DDP broadcasts rank 0's parameters when it wraps the model: wrap after any resume.
    backbone = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if ctx.active else model
    forward = torch.compile(backbone) if cfg.compile else backbone

    def save(step: int) -> None:
        rng, per_rank = [_rng_state()], [{"loss": loss.state_dict(), "optimizer": optimizer.state_dict()}]
        if ctx.active:
            rng = [None] * ctx.world_size
            torch.distributed.all_gather_object(rng, _rng_state())
            if loss.sharded:  # each rank's class rows and their optimiser moments
                per_rank = [None] * ctx.world_size
                torch.distributed.all_gather_object(per_rank, {"loss": loss.state_dict(), "optimizer": optimizer.state_dict()})
        if checkpoint is not None and ctx.is_main:
            save_atomic({"model": model.state_dict(), "loss": per_rank[0]["loss"], "shards": per_rank,
                         "optimizer": per_rank[0]["optimizer"],
                         "schedule": schedule.state_dict(), "scaler": scaler.state_dict(), "rng": rng[0],
                         "rng_ranks": rng, "step": step, "history": history, "seconds": seconds}, checkpoint)

    augment = Augmentation(flip=cfg.flip, random_crop=tuple(cfg.random_crop) or None, color_jitter=cfg.color_jitter)
    dtype = next(model.parameters()).dtype  # float32; float64 where a test compares steps in double precision
    model.train()
    loss.train()
    tic = time.perf_counter()
    batches = loaded_batches(data.images, lambda step: sampler.batch(step)[local], start, cfg.steps,
                             workers=workers, pin_memory=device.type == "cuda")
    for step, (index, images) in zip(range(start, cfg.steps), batches):  # index: this rank's share of the batch
        images = images.to(device, non_blocking=True)  # before flipping: a pinned batch is copied asynchronously
        # drawn for the global batch, so that the ranks' shares make the single-process batch
        images = augment(images, seed=seed, step=step, local=local, batch_size=sampler.batch_size)
        x = to_input(images, dtype).contiguous(memory_format=torch.channels_last)
        y = data.labels[index].to(device, non_blocking=True)
        loss.set_progress(step, cfg.steps)
        with autocast(device, cfg.precision):
            features = forward(x)
        features = features.to(torch.promote_types(features.dtype, torch.float32))  # autocast's half -> float32
        try:
            if gathered:
                value = loss(gather_keep_grad(features, ctx), gather_keep_grad(y, ctx))
            else:
                value = loss(features, y)
        except NonFiniteEmbeddings as err:  # a miner met the diverged model's NaNs before the loss did
            raise TrainingDiverged(f"{err} at step {step}; lower the learning rate or the loss's scale") from err
        optimizer.zero_grad(set_to_none=True)
        # A gathered loss is the global loss on every rank, its gradient only through local images:
        # x world_size, so that DDP's mean over ranks is the global gradient.
        scaler.scale(value * ctx.world_size if gathered else value).backward()
        if not loss.sharded:  # a sharded classifier (partial_fc) owns its rows per rank
            average_gradients(head, ctx, divide=ctx.world_size if gathered else 1)
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        last = step + 1 == cfg.steps
        validate_now = cfg.eval_every > 0 and ((step + 1) % cfg.eval_every == 0 or last)
        if step % cfg.log_every == 0 or last or validate_now:
            # The trainer reads the loss (a host-device sync) on logged steps only.
            current = _global_loss(float(value.detach()), ctx, device, local=not gathered)
            if not math.isfinite(current):
                raise TrainingDiverged(f"loss became {current} at step {step}; lower the learning rate or the loss's scale")
            row = {"step": step, "loss": current, "lr": schedule.get_last_lr()[0]}
            row.update({k: float(v) for k, v in loss.stats.items()})
            if validate_now and validate is not None:
                paused = time.perf_counter()
                row["val_accuracy"] = validate()
                tic += time.perf_counter() - paused
            history.append(row)
            if log is not None:
                log(row)
            if on_step is not None:
                on_step(step + 1, current)
        if checkpoint is not None and ((step + 1) % cfg.checkpoint_every == 0 or last):  # every rank: save() gathers RNG states
            seconds_now = seconds + time.perf_counter() - tic
            seconds, tic = seconds_now, time.perf_counter()
            save(step + 1)
    seconds += time.perf_counter() - tic
    done = cfg.steps - start
    return TrainResult(cfg.steps, seconds, done * sampler.batch_size / seconds if seconds > 0 and done else 0.0, history)
