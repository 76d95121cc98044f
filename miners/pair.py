"""Pair mining for the contrastive loss (Hadsell, Chopra & LeCun 2006; DeepID2, Sun et al. 2014)."""
from __future__ import annotations

import torch

from miners._validation import check_non_negative
from miners.base import Miner
from miners.distances import distance_matrix, same_label_masks


class PairMiner(Miner):
    """Positive and negative pairs ``(a1, p, a2, n)``, each ``[P]`` / ``[N]`` int64.

    Args:
        pos_margin: keep only positive pairs with ``d(a, p) > pos_margin``; None keeps all.
        neg_margin: keep only negative pairs with ``d(a, n) < neg_margin``; None keeps all.
        hardest_negatives: keep, per anchor, only its closest negative (after ``neg_margin``).
        normalize: L2-normalise embeddings before the Euclidean distance (default True).

    ``PairMiner()`` gives every pair in the batch (what pytorch-metric-learning's losses use with
    no miner); ``PairMiner(pos_margin=0.2, neg_margin=0.8)`` equals its ``PairMarginMiner()``.
    Pairs are ordered row-major (anchor, then other index), as ``torch.where`` gives them.
    """

    def __init__(
        self,
        *,
        pos_margin: float | None = None,
        neg_margin: float | None = None,
        hardest_negatives: bool = False,
        normalize: bool = True,
    ) -> None:
        super().__init__(normalize=normalize)
        if pos_margin is not None:
            check_non_negative("pos_margin", pos_margin)
        if neg_margin is not None:
            check_non_negative("neg_margin", neg_margin)
        self.pos_margin = pos_margin
        self.neg_margin = neg_margin
        self.hardest_negatives = bool(hardest_negatives)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        pos_mask, neg_mask = same_label_masks(labels)
        if self.pos_margin is not None or self.neg_margin is not None or self.hardest_negatives:
            dist = distance_matrix(embeddings, normalize=self.normalize)
            if self.pos_margin is not None:
                pos_mask = pos_mask & (dist > self.pos_margin)
            if self.neg_margin is not None:
                neg_mask = neg_mask & (dist < self.neg_margin)
            if self.hardest_negatives:
                closest = dist.masked_fill(~neg_mask, float("inf")).argmin(dim=1, keepdim=True)
                hardest = torch.zeros_like(neg_mask).scatter_(1, closest, True)
                neg_mask = neg_mask & hardest
        a1, p = torch.where(pos_mask)
        a2, n = torch.where(neg_mask)
        return a1, p, a2, n
