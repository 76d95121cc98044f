"""Contrastive loss (Hadsell, Chopra & LeCun 2006; DeepID2, Sun et al. 2014)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

import miners
from miners.distances import distance_matrix
from mlcompare.config.search_space import Dim
from mlcompare.losses.pair import MinerLike, PairLoss, mined_triplet_distances, reduce_losses


class ContrastiveLoss(PairLoss):
    """Pull positive pairs within ``pos_margin``, push negative pairs beyond ``neg_margin``.

    .. math::
        \\ell_+ = [d(a, p) - m_+]_+^{k}, \\qquad \\ell_- = [m_- - d(a, n)]_+^{k}, \\qquad
        L = \\operatorname{red}(\\ell_+) + \\operatorname{red}(\\ell_-)

    with ``k = 1`` (pytorch-metric-learning's ``ContrastiveLoss``) or ``k = 2`` (``squared=True``,
    Hadsell's form without its constant 1/2). ``d`` is Euclidean on L2-normalised embeddings
    (``normalize=True``; range ``[0, 2]``).

    Args:
        num_classes, embedding_dim: given to every loss by the registry; unused here.
        pos_margin: ``m_+`` (default 0: positives are pulled together).
        neg_margin: ``m_-`` (default 1.0, pytorch-metric-learning's default).
        squared: square the hinges (Hadsell / DeepID2 form).
        normalize: L2-normalise embeddings first.
        reduction: ``"nonzero"`` (default, matches pytorch-metric-learning): positive and
            negative terms are each averaged over their non-zero entries, then summed;
            ``"all"``: each averaged over all mined pairs, then summed.
        miner: callable returning ``(a1, p, a2, n)`` (or ``(a, p, n)`` / ``MemoryBankMiner``'s
            ``(a, p, negative_embeddings)``, split into its pairs),
            or None for every pair in the batch (``PairMiner()``).

    ``stats``: ``active_fraction`` (non-zero pairs / mined pairs) and ``n_mined`` (pairs).
    """

    search_space = {"pos_margin": Dim(0.0, 0.4), "neg_margin": Dim(0.5, 1.5)}

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        pos_margin: float = 0.0,
        neg_margin: float = 1.0,
        squared: bool = False,
        normalize: bool = True,
        reduction: str = "nonzero",
        miner: MinerLike | None = None,
    ) -> None:
        super().__init__(miner=miner, default_miner=miners.PairMiner(normalize=normalize), reduction=reduction,
                         normalize=normalize, squared=squared)
        if not pos_margin >= 0:
            raise ValueError(f"pos_margin must be >= 0, got {pos_margin}")
        if not neg_margin > pos_margin:
            raise ValueError(f"neg_margin must be > pos_margin ({pos_margin}), got {neg_margin}")
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mined = self.miner(embeddings, labels)
        if len(mined) == 3:
            # (a, p, n) -> pairs (a, p) and (a, n), as pytorch-metric-learning converts them; the
            # negative may also be bank embeddings from MemoryBankMiner
            pos_dist, neg_dist, _ = mined_triplet_distances(mined, embeddings, normalize=self.normalize, squared=False)
        elif len(mined) == 4:
            a1, p, a2, n = mined
            dist = distance_matrix(embeddings, normalize=self.normalize)
            pos_dist, neg_dist = dist[a1, p], dist[a2, n]
        else:
            raise ValueError(f"miner must return (a1, p, a2, n) or (a, p, n), got a {len(mined)}-tuple")
        n_mined = pos_dist.numel() + neg_dist.numel()
        if n_mined == 0:
            return self.nothing_mined(embeddings)
        pos_losses = F.relu(pos_dist - self.pos_margin)
        neg_losses = F.relu(self.neg_margin - neg_dist)
        if self.squared:
            pos_losses, neg_losses = pos_losses.pow(2), neg_losses.pow(2)
        pos_loss, pos_active = reduce_losses(pos_losses, self.reduction)
        neg_loss, neg_active = reduce_losses(neg_losses, self.reduction)
        self.stats = {
            "active_fraction": ((pos_active + neg_active).float() / n_mined).detach(),
            "n_mined": torch.tensor(float(n_mined)),
        }
        return pos_loss + neg_loss
