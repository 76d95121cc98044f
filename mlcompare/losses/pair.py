"""What the pair losses (contrastive, triplet, soft-margin triplet, margin) share: the miner they
call, the reduction, the distances of mined tuples, and the constructor that sets these up."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from miners.distances import distance_matrix
from miners.tuples import pairs_to_triplets
from mlcompare.losses.base import Loss

REDUCTIONS = ("nonzero", "all")

MinerLike = Callable[[torch.Tensor, torch.Tensor], tuple]


def build_miner(miner: MinerLike | None, default: MinerLike) -> MinerLike:
    """The miner a pair loss calls: the one given (a ``miners`` object or any callable), or ``default``.

    Turning a miner *name* into a miner happens in one place, :func:`mlcompare.losses.build_miner`.
    """
    if miner is None:
        return default
    if isinstance(miner, str) or not callable(miner):
        raise ValueError(f"miner must be a miner object called as miner(embeddings, labels) (build one by name "
                         f"with mlcompare.losses.build_miner or miners.get), got {miner!r}")
    return miner


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    return reduction


def reduce_losses(losses: torch.Tensor, reduction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reduced loss, number of non-zero terms)``.

    ``"nonzero"``: mean over the terms ``> 0`` (pytorch-metric-learning's ``AvgNonZeroReducer``),
    0 when there are none; ``"all"``: mean over every term. Neither forces a host sync.
    """
    active = (losses > 0).sum()
    if reduction == "nonzero":
        return losses.sum() / active.clamp_min(1), active
    return losses.sum() / max(losses.numel(), 1), active


def mined_triplet_distances(
    mined: tuple, embeddings: torch.Tensor, *, normalize: bool, squared: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(d_ap, d_an, anchor)`` with gradient, from a miner's output.

    Accepts ``(a, p, n)`` index triplets, ``(a1, p, a2, n)`` pairs (every positive pair joined
    with every negative pair of the same anchor), or ``(a, p, negative_embeddings)`` where the
    third entry is a float ``[T, D]`` tensor of negatives from outside the batch (the output of
    ``miners.MemoryBankMiner``; these carry no gradient).
    """
    if len(mined) == 4:
        mined = pairs_to_triplets(*mined)
    if len(mined) != 3:
        raise ValueError(f"miner must return (anchor, positive, negative) or (a1, p, a2, n), got a {len(mined)}-tuple")
    anchor, positive, negative = mined
    dist = distance_matrix(embeddings, normalize=normalize, squared=squared)
    d_ap = dist[anchor, positive]
    if negative.is_floating_point():
        if negative.dim() != 2 or negative.shape != (anchor.numel(), embeddings.shape[1]):
            raise ValueError(f"negative embeddings must be [T, D] = [{anchor.numel()}, {embeddings.shape[1]}], got {tuple(negative.shape)}")
        x = F.normalize(embeddings[anchor], dim=1) if normalize else embeddings[anchor]
        y = F.normalize(negative, dim=1) if normalize else negative
        sq = (x - y).pow(2).sum(dim=1)
        d_an = sq if squared else sq.clamp_min(1e-12).sqrt()
    else:
        d_an = dist[anchor, negative]
    return d_ap, d_an, anchor


class PairLoss(Loss):
    """Base of the losses on mined pairs or triplets: ``family = "pair"``, the miner (the one given,
    else the loss's ``default_miner``), ``reduction`` (checked), and whether distances are on
    L2-normalised embeddings (``normalize``) and squared (``squared``)."""

    family = "pair"

    def __init__(self, *, miner: MinerLike | None, default_miner: MinerLike, reduction: str, normalize: bool = True,
                 squared: bool = False) -> None:
        super().__init__()
        self.squared = bool(squared)
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)
        self.miner = build_miner(miner, default_miner)

    def nothing_mined(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The loss of a batch where the miner found nothing: 0, with a gradient, and zero stats."""
        self.stats = {"active_fraction": embeddings.new_zeros(()), "n_mined": embeddings.new_zeros(())}
        return embeddings.sum() * 0.0
