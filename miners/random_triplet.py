"""Random triplet sampling: the baseline every other miner is compared to."""
from __future__ import annotations

import torch

from miners._per_pair import sample_per_pair
from miners.base import Miner
from miners.distances import same_label_masks


class RandomTripletMiner(Miner):
    """For every anchor-positive pair, one negative drawn uniformly from the anchor's other-label samples.

    Args:
        seed: seed of a private ``torch.Generator`` (None: torch's global generator).

    Returns ``(anchor, positive, negative)`` int64 ``[P]``, P the number of positive pairs whose
    anchor has a negative. Distances are never computed (``normalize`` is accepted for
    uniformity with the other miners and has no effect).
    """

    def __init__(self, *, seed: int | None = None, normalize: bool = True) -> None:
        super().__init__(normalize=normalize)
        self.seed = seed

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pos_mask, neg_mask = same_label_masks(labels)
        has_neg = neg_mask.any(dim=1)
        anchor, positive = torch.where(pos_mask & has_neg.unsqueeze(1))
        if anchor.numel() == 0:
            return anchor, positive, anchor.clone()
        if self.seed is not None and (self._generator is None or self._generator.device != labels.device):
            self._generator = torch.Generator(device=labels.device).manual_seed(self.seed)
        # uniform over each row's negatives: inverse-CDF sampling on the 0/1 mask
        return anchor, positive, sample_per_pair(neg_mask.to(embeddings.dtype), anchor, self._generator)
