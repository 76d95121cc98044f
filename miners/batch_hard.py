"""Batch-hard mining (Hermans, Beyer & Leibe 2017, "In Defense of the Triplet Loss")."""
from __future__ import annotations

import torch

from miners.base import Miner
from miners.distances import distance_matrix, same_label_masks


class BatchHardMiner(Miner):
    """Per anchor, the hardest positive (farthest same-label sample) and hardest negative (closest other-label sample).

    .. math:: p(a) = \\arg\\max_{p: y_p = y_a, p \\ne a} d(a, p), \\quad n(a) = \\arg\\min_{n: y_n \\ne y_a} d(a, n)

    Distance: Euclidean on L2-normalised embeddings (``normalize=False`` to use raw ones).
    Returns ``(anchor, positive, negative)``, each ``[T]`` int64 with ``T <= B``: one triplet per
    anchor that has at least one positive and one negative (same as pytorch-metric-learning's
    ``BatchHardMiner``; ties resolve to the first index reported by ``torch.max``/``torch.min``).

    >>> emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [-1.0, 0.0]])
    >>> BatchHardMiner()(emb, torch.tensor([0, 0, 1, 1]))
    (tensor([0, 1, 2, 3]), tensor([1, 0, 3, 2]), tensor([2, 2, 0, 1]))
    """

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dist = distance_matrix(embeddings, normalize=self.normalize)
        pos_mask, neg_mask = same_label_masks(labels)
        _, hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).max(dim=1)
        _, hardest_neg = dist.masked_fill(~neg_mask, float("inf")).min(dim=1)
        keep = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        anchor = torch.nonzero(keep).flatten()
        return anchor, hardest_pos[anchor], hardest_neg[anchor]
