"""Triplet loss (Weinberger & Saul 2009 "LMNN"; Schroff et al. 2015 "FaceNet")."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import miners
from mlcompare.config.search_space import Dim
from mlcompare.losses.pair import MinerLike, PairLoss, mined_triplet_distances, reduce_losses

class TripletLoss(PairLoss):
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
        super().__init__(miner=miner, default_miner=miners.BatchAllMiner(normalize=normalize), reduction=reduction,
                         normalize=normalize, squared=squared)
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def per_triplet(self, d_ap: torch.Tensor, d_an: torch.Tensor) -> torch.Tensor:
        return F.relu(d_ap - d_an + self.margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mined = self.miner(embeddings, labels)
        d_ap, d_an, _ = mined_triplet_distances(mined, embeddings, normalize=self.normalize, squared=self.squared)
        if d_ap.numel() == 0:
            return self.nothing_mined(embeddings)
        losses = self.per_triplet(d_ap, d_an)
        loss, active = reduce_losses(losses, self.reduction)
        self.stats = {
            "active_fraction": (active.float() / losses.numel()).detach(),
            "n_mined": torch.tensor(float(losses.numel())),
        }
        return loss
