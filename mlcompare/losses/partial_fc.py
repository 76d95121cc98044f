"""Partial FC: a margin-softmax classifier whose class weights are sharded across ranks and sampled.

An, Deng et al., "Partial FC: Training 10 Million Identities on a Single Machine", ICCVW 2021
(arXiv:2010.05222), and insightface's ``arcface_torch/partial_fc_v2.py`` (the idea; our code).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.margin_softmax import MarginSoftmax
from mlcompare.losses.normalized import angle_stats, check_batch, check_sizes, cosine_logits, one_rank, target_of

def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """``(class_start, num_local)``: the contiguous block of classes that ``rank`` holds.

    The first ``num_classes % world_size`` ranks hold one class more (insightface's split).

    >>> [shard_range(10, r, 4) for r in range(4)]
    [(0, 3), (3, 3), (6, 2), (8, 2)]
    """
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + int(rank < extra)


def parameter_bytes(num_classes: int, embedding_dim: int, *, world_size: int, rank: int = 0,
                    bytes_per_value: int = 4) -> int:
    """Bytes of the class-weight shard on ``rank`` (computed, nothing allocated).

    Parameters only: the gradient adds as much again, SGD momentum as much again, AdamW twice.

    >>> parameter_bytes(1_000_000, 512, world_size=8)  # 125,000 x 512 float32
    256000000
    """
    return shard_range(num_classes, rank, world_size)[1] * embedding_dim * bytes_per_value


def sample_classes(local_labels: torch.Tensor, num_local: int, num_sample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled local class indices (sorted) and the batch's labels renumbered into them.

    ``local_labels`` ``[N]``: a class index in ``0 .. num_local - 1`` or -1 (a class held by another
    rank). Every positive class (a label present in the batch) is kept; the rest of the
    ``num_sample`` slots are drawn uniformly without replacement from the other local classes.
    When the positives alone exceed ``num_sample``, the positives only are used (as insightface).
    Returns ``(index [S], labels [N])`` with ``index[labels[i]] == local_labels[i]`` where >= 0.
    """
    with torch.no_grad():
        is_local = local_labels >= 0
        positive = torch.unique(local_labels[is_local], sorted=True)
        if positive.numel() >= num_sample:
            index = positive
        else:
            score = torch.rand(num_local, device=local_labels.device)
            score[positive] = 2.0  # above every uniform draw: positives are always in the top-k
            index = torch.topk(score, k=num_sample).indices.sort().values
        mapped = torch.where(is_local, torch.searchsorted(index, local_labels.clamp(min=0)), local_labels)
        return index, mapped


def _sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """``x`` summed over the process group (a copy; no gradient: for running statistics)."""
    total = x.detach().clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


class _GatherKeepingGrad(torch.autograd.Function):
    """All-gather of equal-sized ``[B, D]`` blocks; backward sums each block's gradient over ranks.

    Every rank computes its logits for the global batch, so the gradient of the (global) loss with
    respect to rank r's embeddings is the sum over ranks of that block's gradient.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rank: int, world_size: int, grad_scale: float) -> torch.Tensor:
        ctx.rank, ctx.batch, ctx.grad_scale = rank, x.shape[0], grad_scale
        parts = [torch.empty_like(x) for _ in range(world_size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        own = grad[ctx.rank * ctx.batch:(ctx.rank + 1) * ctx.batch]
        return own * ctx.grad_scale, None, None, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of ``[N, S_r]`` logits whose classes are split over ranks.

    ``labels`` ``[N]`` index this rank's columns, or are -1 where the target lives on another
    rank. ``loss_i = log sum_r sum_j exp(z_ij - max_i) + max_i - z_{i,y_i}`` with the max, the sum
    and the target logit all-reduced; gradient ``(softmax - onehot) / N`` on this rank's columns.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        row_max = logits.max(dim=1).values
        dist.all_reduce(row_max, op=dist.ReduceOp.MAX)
        exp = (logits - row_max.unsqueeze(1)).exp_()
        denom = exp.sum(dim=1)
        dist.all_reduce(denom, op=dist.ReduceOp.SUM)
        local = labels >= 0
        target = torch.zeros_like(row_max)
        target[local] = logits[local, labels[local]]
        dist.all_reduce(target, op=dist.ReduceOp.SUM)
        ctx.save_for_backward(exp.div_(denom.unsqueeze(1)), labels)
        return (denom.log() + row_max - target).mean()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        prob, labels = ctx.saved_tensors
        grad = prob.clone()
        rows = torch.nonzero(labels >= 0).squeeze(1)
        grad[rows, labels[rows]] -= 1.0
        return grad * (grad_out / labels.shape[0]), None


class PartialFC(MarginSoftmax):
    """Margin softmax over this rank's shard of the classes, on the batch's positives plus sampled negatives.

    Per step, with the global batch ``x`` ``[N, D]`` (all-gathered when ``world_size > 1``):
    ``L = mean_i CE(margin(cos theta_i., y_i), y_i)`` over the sampled columns, the softmax
    normalised over the sampled classes of ALL ranks. Rank r holds the classes
    ``shard_range(num_classes, r, world_size)`` as ``weight`` ``[num_local, embedding_dim]``; while
    training it samples ``max(1, int(sample_rate * num_local))`` of them: every class present in the
    global batch, then uniform negatives (insightface's ``partial_fc_v2``). In eval mode, or with
    ``sample_rate=1``, every local class is used; on one rank that is exactly ``get(margin, ...)``.

    ``margin`` is a margin-logits object (:class:`~mlcompare.losses.margin_logits.MarginLogits`), as
    ``partial_fc_v2`` takes a margin function: from a comparison, ``margin`` names a registered margin
    (default ``"arcface"``) and the method's other parameters are that margin's, named and checked as
    in the loss of that name, with ``s`` defaulting to 64 for every margin (registry CosFace: 30).
    Angles in radians. On one rank at sample_rate=1 each margin is its loss exactly, running
    statistics included. Sharded: per-sample margins (AdaFace's norm statistics, MagFace's margins
    and ``g``, ElasticFace's draws) are computed from the gathered batch alike on every rank
    (ElasticFace's generator is seeded alike on every rank); what reads across classes goes through
    the margin's ``sum_ranks`` (CurricularFace's ``t``). Sampling keeps every positive, so these
    statistics do not change with ``sample_rate``; the sampled logits are the full logits' columns.
    MagFace's ``g``, the same on every rank, passes ``1 / world_size`` of its gradient from each, so
    that the gathered embeddings get it once. A margin or loss that declares a ``shard_refusal``
    (AdaCos, UniFace, SphereFace2: not one softmax over per-class logits) is refused with its reason.

    Multi-process (``world_size > 1``, ``torch.distributed`` initialised, equal batch sizes on every
    rank): do NOT wrap this module in DistributedDataParallel (each rank owns a different shard).
    With ``ddp_grad_correction`` the embeddings' gradient is multiplied by ``world_size`` so that
    DDP's averaging of backbone gradients gives the gradient of this global-batch loss.
    Rows of ``weight`` not sampled in a step get a zero gradient (weight decay and momentum still
    move them, as in insightface v2). ``stats``: ``theta_target`` / ``theta_other`` (radians, over
    the sampled classes of all ranks), the margin's own (as its registry loss logs them, over the
    global batch) and ``sampled_classes`` (this rank).
    """

    search_space = {"s": Dim(8.0, 128.0, log=True)}

    shown_params = ('margin', 's')

    shardable = True
    takes_margin = True
    # a comparison's defaults for the margin it names: the margin and the scale (the margin's other
    # parameters default as in the loss of that name)
    default_margin = "arcface"
    default_s = 64.0

    def __init__(self, *, num_classes: int, embedding_dim: int, margin: MarginLogits, sample_rate: float = 1.0,
                 rank: int = 0, world_size: int = 1, ddp_grad_correction: bool = True) -> None:
        check_sizes(num_classes, embedding_dim)
        if isinstance(world_size, bool) or not isinstance(world_size, int) or not 1 <= world_size <= num_classes:
            raise ValueError(f"world_size must be an integer in [1, num_classes={num_classes}], got {world_size!r}")
        if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank must be an integer in [0, world_size - 1 = {world_size - 1}], got {rank!r}")
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float)) or not 0 < sample_rate <= 1:
            raise ValueError(f"sample_rate (share of classes in each step's logits) must be in (0, 1], got {sample_rate!r}")
        if margin.shard_refusal:
            raise ValueError(f"partial_fc cannot shard margin {type(margin).__name__}: {margin.shard_refusal}")
        self.class_start, self.num_local = shard_range(num_classes, rank, world_size)
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, margin=margin, rows=self.num_local)
        self.sharded = world_size > 1  # ranks own different rows: the trainer must not average them
        self.sample_rate = float(sample_rate)
        self.num_sample = max(1, int(self.sample_rate * self.num_local))
        self.rank, self.world_size = rank, world_size
        self.ddp_grad_correction = bool(ddp_grad_correction)

    def _distributed(self) -> bool:
        if self.world_size == 1:
            return False
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(f"partial_fc with world_size={self.world_size} needs an initialised torch.distributed "
                             "process group (torchrun + init_process_group); use world_size=1 on one process")
        if dist.get_world_size() != self.world_size or dist.get_rank() != self.rank:
            raise ValueError(f"partial_fc was built for rank {self.rank} of {self.world_size}, but the process group "
                             f"says rank {dist.get_rank()} of {dist.get_world_size()}; pass the group's rank and size")
        return True

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        distributed = self._distributed()
        if distributed:
            scale = float(self.world_size) if self.ddp_grad_correction else 1.0
            embeddings = _GatherKeepingGrad.apply(embeddings, self.rank, self.world_size, scale)
            gathered = [torch.empty_like(labels) for _ in range(self.world_size)]
            dist.all_gather(gathered, labels.contiguous())
            labels = torch.cat(gathered)
            local = (labels >= self.class_start) & (labels < self.class_start + self.num_local)
            labels = torch.where(local, labels - self.class_start, torch.full_like(labels, -1))
        weight = self.weight
        if self.training and self.num_sample < self.num_local:
            index, labels = sample_classes(labels, self.num_local, self.num_sample)
            weight = self.weight[index]
        cos = cosine_logits(embeddings, weight)
        logits = self.margin_logits(cos, labels, embeddings, _sum_over_ranks if distributed else one_rank)
        penalty = self.margin_logits.penalty(embeddings)
        if not distributed:
            self.stats = angle_stats(cos, labels)
            loss = F.cross_entropy(logits, labels)
        else:
            self.stats = self._sharded_angle_stats(cos, labels)
            loss = _ShardedCrossEntropy.apply(logits, labels)
            if penalty is not None:
                # the same value on every rank; the gathered embeddings' backward sums the ranks' gradients
                penalty = penalty / self.world_size + (penalty - penalty / self.world_size).detach()
        if penalty is not None:
            loss = loss + penalty
        self.stats.update(self.margin_logits.stats)
        self.stats["sampled_classes"] = torch.tensor(float(weight.shape[0]), device=cos.device)
        return loss

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """All classes' cosines on one rank; None when sharded (each rank holds only its own rows)."""
        return None if self.sharded else self.class_cosines(embeddings)

    @staticmethod
    def _sharded_angle_stats(cos: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``angle_stats`` over the classes of all ranks: sums and counts all-reduced in one call."""
        with torch.no_grad():
            theta = torch.acos(cos.clamp(-1.0, 1.0))
            local = labels >= 0
            target = target_of(theta, labels.clamp(min=0))[local]
            counts = torch.tensor([target.numel(), theta.numel() - target.numel()], dtype=theta.dtype, device=theta.device)
            sums = torch.stack([target.sum(), counts[0], theta.sum() - target.sum(), counts[1]])
            dist.all_reduce(sums, op=dist.ReduceOp.SUM)
            return {"theta_target": sums[0] / sums[1], "theta_other": sums[2] / sums[3]}

    def extra_repr(self) -> str:
        return (f"margin={type(self.margin_logits).__name__}, classes {self.class_start}..{self.class_start + self.num_local - 1} "
                f"of {self.num_classes}, sample_rate={self.sample_rate}, rank={self.rank}/{self.world_size}")
