"""Semi-hard negative mining (Schroff, Kalenichenko & Philbin 2015, "FaceNet")."""
from __future__ import annotations

import torch

from miners._sorted_negatives import SortedNegatives
from miners._validation import check_non_negative
from miners.base import Miner
from miners.distances import distance_matrix, same_label_masks

_SELECTIONS = ("all", "facenet")
_FALLBACKS = ("farthest", "drop")


class SemiHardMiner(Miner):
    """Semi-hard triplets: negatives farther than the positive but inside the margin.

    .. math:: d(a, p) < d(a, n) \\le d(a, p) + m

    Args:
        margin: ``m`` (Euclidean units of the chosen distance), used by ``selection="all"``.
        selection: ``"all"`` returns every semi-hard triplet (pytorch-metric-learning's
            ``TripletMarginMiner(margin, type_of_triplets="semihard")``, same set);
            ``"facenet"`` returns one triplet per anchor-positive pair: the closest negative with
            ``d(a, n) > d(a, p)`` (FaceNet section 3.2, no upper bound: the loss's margin decides
            whether it contributes).
        fallback: for ``"facenet"``, what to do with a pair whose every negative is at most as far
            as the positive: ``"farthest"`` takes the farthest negative (the least hard of them,
            as TensorFlow Addons' ``triplet_semihard_loss`` does), ``"drop"`` leaves the pair out.
        normalize: L2-normalise before the Euclidean distance (default True).

    Returns ``(anchor, positive, negative)`` int64 ``[T]``. Neither selection materialises all
    ``B^3`` candidate triplets (negatives are sorted per anchor and found by binary search).
    """

    shown_params = ('margin', 'selection')

    def __init__(
        self,
        *,
        margin: float = 0.2,
        selection: str = "all",
        fallback: str = "farthest",
        normalize: bool = True,
    ) -> None:
        super().__init__(normalize=normalize)
        check_non_negative("margin", margin)
        if selection not in _SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(_SELECTIONS)}, got {selection!r}")
        if fallback not in _FALLBACKS:
            raise ValueError(f"fallback must be one of {', '.join(_FALLBACKS)}, got {fallback!r}")
        self.margin = float(margin)
        self.selection = selection
        self.fallback = fallback

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dist = distance_matrix(embeddings, normalize=self.normalize)
        pos_mask, neg_mask = same_label_masks(labels)
        table = SortedNegatives(dist, pos_mask, neg_mask)
        first_farther = table.rank_above(table.ap_dist, strict=True)
        if self.selection == "all":
            end = table.rank_above(table.ap_dist + self.margin, strict=True)
            return table.expand(first_farther, end)
        num_neg = table.num_neg[table.anchor]
        found = first_farther < num_neg
        if self.fallback == "drop":
            keep = torch.nonzero(found).flatten()
            rank = first_farther[keep]
        else:
            keep = torch.arange(found.numel(), device=found.device)
            rank = torch.where(found, first_farther, num_neg - 1)
        anchor = table.anchor[keep]
        return anchor, table.positive[keep], table.sorted_idx[anchor, rank]
