"""Soft-margin triplet loss (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss", section 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.pair import MinerLike
from mlcompare.losses.triplet import TripletLoss


class SoftMarginTripletLoss(TripletLoss):
    """The hinge replaced by a softplus, so that already-satisfied triplets still pull a little.

    .. math:: \\ell(a, p, n) = \\log\\left(1 + e^{\\,d(a, p) - d(a, n) + m}\\right)

    with ``m = 0`` as in Hermans et al. (``margin`` is kept for pytorch-metric-learning's
    ``TripletMarginLoss(smooth_loss=True, margin=m)``, which this equals). Every term is
    positive, so ``reduction="nonzero"`` and ``"all"`` coincide (default ``"all"``); the logged
    ``active_fraction`` is therefore 1 and ``hinge_active_fraction`` counts
    ``d(a, p) - d(a, n) + m > 0`` instead. Distances as in ``TripletLoss``.

    Args: as ``TripletLoss``; default miner None = all valid triplets in the batch
    (Hermans et al. pair it with ``miners.BatchHardMiner()``, pass that to reproduce them).
    """

    search_space = {"margin": Dim(0.0, 2.0)}  # 2: the largest distance of unit vectors; beyond, every triplet violates it

    shown_params = ()  # its margin defaults to 0 (the soft-margin form): nothing to name

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        margin: float = 0.0,
        squared: bool = False,
        normalize: bool = True,
        reduction: str = "all",
        miner: MinerLike | None = None,
    ) -> None:
        super().__init__(
            num_classes=num_classes, embedding_dim=embedding_dim, margin=margin, squared=squared,
            normalize=normalize, reduction=reduction, miner=miner,
        )

    def per_triplet(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        violation = d_ap - d_an + self.margin
        self._hinge_active = (violation > 0).sum()
        return F.softplus(violation)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._hinge_active = None
        loss = super().forward(embeddings, labels)
        if self._hinge_active is not None:
            self.stats["hinge_active_fraction"] = (self._hinge_active.float() / self.stats["n_mined"]).detach()
        else:
            self.stats["hinge_active_fraction"] = embeddings.new_zeros(())
        return loss
