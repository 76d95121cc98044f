"""Batch-all mining (Hermans, Beyer & Leibe 2017): every valid triplet in the batch."""
from __future__ import annotations

import torch

from miners._sorted_negatives import SortedNegatives
from miners._validation import check_non_negative
from miners.base import Miner
from miners.distances import distance_matrix, same_label_masks


class BatchAllMiner(Miner):
    """Every triplet ``(a, p, n)`` with ``y_p = y_a``, ``p != a``, ``y_n != y_a``; optionally only those with non-zero loss.

    Args:
        margin: the triplet margin ``m`` used by ``only_nonzero``.
        only_nonzero: keep only triplets with ``max(0, d_ap - d_an + m) > 0``, i.e.
            ``d_an < d_ap + m`` (pytorch-metric-learning's ``TripletMarginMiner(type_of_triplets="all")``,
            which keeps ``d_an - d_ap <= m``; the two differ only on exact equality).
        normalize: L2-normalise before the Euclidean distance (default True).

    Returns ``(anchor, positive, negative)`` int64 ``[T]``, grouped by positive pair (row-major)
    and, within a pair, by increasing ``d_an``. Never builds a ``B^3`` mask.
    """

    shown_params = ('margin',)

    def __init__(self, *, margin: float = 0.2, only_nonzero: bool = False, normalize: bool = True) -> None:
        super().__init__(normalize=normalize)
        check_non_negative("margin", margin)
        self.margin = float(margin)
        self.only_nonzero = bool(only_nonzero)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dist = distance_matrix(embeddings, normalize=self.normalize)
        pos_mask, neg_mask = same_label_masks(labels)
        table = SortedNegatives(dist, pos_mask, neg_mask)
        start = torch.zeros_like(table.anchor)
        if self.only_nonzero:
            end = table.rank_above(table.ap_dist + self.margin, strict=False)
        else:
            end = table.num_neg[table.anchor]
        return table.expand(start, end)
