"""Triplet loss (Weinberger & Saul 2009 "LMNN"; Schroff et al. 2015 "FaceNet")."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

import miners
from miners.distances import distance_matrix
from miners.tuples import pairs_to_triplets
from mlcompare.losses.base import Loss
from mlcompare.search_space import Dim

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


class TripletLoss(Loss):
    """Triplet margin loss, one term per mined triplet.

    .. math:: \\ell(a, p, n) = \\max(0,\\; d(a, p) - d(a, n) + m)

    ``d`` is the Euclidean distance on L2-normalised embeddings (``normalize=True``, range
    ``[0, 2]``) or its square (``squared=True``, FaceNet's form, range ``[0, 4]``).

    Args:
        num_classes, embedding_dim: given to every loss by the registry; unused here.
        margin: ``m``. Default 0.2, FaceNet's value (chosen over pytorch-metric-learning's
            0.05, a library default without a paper behind it) and the usual one for faces.
        squared: use squared distances.
        normalize: L2-normalise embeddings first (default True).
        reduction: ``"nonzero"`` (default) averages over triplets with non-zero loss, as
            pytorch-metric-learning's ``TripletMarginLoss`` (``AvgNonZeroReducer``);
            ``"all"`` averages over every mined triplet.
        miner: a callable ``miner(embeddings, labels)`` returning ``(a, p, n)`` or
            ``(a1, p, a2, n)`` (or ``(a, p, negative_embeddings)`` from ``MemoryBankMiner``),
            or None for all valid triplets in the batch
            (``BatchAllMiner()``, pytorch-metric-learning's default).

    ``forward(embeddings [B, D], labels [B]) -> scalar``; with nothing mined, 0 with a gradient.
    ``stats``: ``active_fraction`` (non-zero triplets / mined) and ``n_mined``.
    """

    search_space = {"margin": Dim(0.01, 1.0, log=True)}

    shown_params = ('margin',)

    family = "pair"

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        margin: float = 0.2,
        squared: bool = False,
        normalize: bool = True,
        reduction: str = "nonzero",
        miner: MinerLike | None = None,
    ) -> None:
        super().__init__()
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)
        self.squared = bool(squared)
        self.normalize = bool(normalize)
        self.reduction = check_reduction(reduction)
        self.miner = build_miner(miner, miners.BatchAllMiner(normalize=normalize))

    def per_triplet(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        return F.relu(d_ap - d_an + self.margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mined = self.miner(embeddings, labels)
        d_ap, d_an, _ = mined_triplet_distances(mined, embeddings, normalize=self.normalize, squared=self.squared)
        if d_ap.numel() == 0:
            self.stats = {"active_fraction": embeddings.new_zeros(()), "n_mined": embeddings.new_zeros(())}
            return embeddings.sum() * 0.0
        losses = self.per_triplet(d_ap, d_an)
        loss, active = reduce_losses(losses, self.reduction)
        self.stats = {
            "active_fraction": (active.float() / losses.numel()).detach(),
            "n_mined": torch.tensor(float(losses.numel())),
        }
        return loss
