"""Distance-weighted negative sampling (Wu, Manmatha, Smola & Kraehenbuehl 2017, "Sampling Matters in Deep Embedding Learning")."""
from __future__ import annotations

import torch

from miners._per_pair import sample_per_pair
from miners._validation import check_positive
from miners.base import Miner
from miners.distances import distance_matrix, same_label_masks


def log_inverse_density(dist: torch.Tensor, dim: int) -> torch.Tensor:
    """``log q(d)^-1`` up to an additive constant, for points uniform on the unit sphere in ``R^dim``.

    .. math:: q(d) \\propto d^{n-2} \\left(1 - \\tfrac{d^2}{4}\\right)^{(n-3)/2}, \\qquad
              \\log q(d)^{-1} = -(n-2) \\log d - \\tfrac{n-3}{2} \\log\\left(1 - \\tfrac{d^2}{4}\\right)

    ``dist`` must lie in ``(0, 2)``; computed in log space because ``q`` under- or overflows
    for ``n`` in the hundreds.
    """
    return -(dim - 2) * torch.log(dist) - ((dim - 3) / 2.0) * torch.log1p(-0.25 * dist * dist)


class DistanceWeightedMiner(Miner):
    """For every anchor-positive pair, one negative sampled with probability proportional to ``q(d_an)^-1``.

    Weights are ``q(max(d, cutoff))^-1`` (the cutoff bounds the variance from very close
    negatives), zero for ``d >= nonzero_loss_cutoff`` (those give no loss with margin-based
    losses), zero for same-label samples; normalised per anchor after subtracting the row's
    largest log-weight, so nothing overflows. Distances: Euclidean on L2-normalised
    embeddings (always: the density is that of the unit sphere).

    Args:
        cutoff: lower clamp of the distance, in ``(0, nonzero_loss_cutoff)``; Wu et al. 0.5.
        nonzero_loss_cutoff: distances at or beyond it are never sampled, in ``(cutoff, 2]``; 1.4.
        seed: seed of a private generator (None: torch's global one).

    Returns ``(anchor, positive, negative)`` int64 ``[T]``: every anchor-positive pair whose anchor
    has a negative of non-zero weight, like pytorch-metric-learning's ``DistanceWeightedMiner``
    (which draws the positives at random instead of taking each once).
    """

    def __init__(self, *, cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4, seed: int | None = None) -> None:
        super().__init__(normalize=True)
        check_positive("cutoff", cutoff)
        if not cutoff < nonzero_loss_cutoff <= 2.0:
            raise ValueError(f"nonzero_loss_cutoff must be in (cutoff={cutoff}, 2], got {nonzero_loss_cutoff}")
        self.cutoff = float(cutoff)
        self.nonzero_loss_cutoff = float(nonzero_loss_cutoff)
        self.seed = seed

    def negative_probabilities(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[B, B]``: row ``a`` is the sampling distribution over negatives of anchor ``a`` (zero rows: none)."""
        with torch.no_grad():
            dist = distance_matrix(embeddings.detach(), normalize=True)
            _, neg_mask = same_label_masks(labels)
            allowed = neg_mask & (dist < self.nonzero_loss_cutoff)
            # Keep log's argument inside (0, 2): the clamp below 2 only touches masked-out entries.
            clamped = dist.clamp(min=self.cutoff, max=2.0 - 1e-6)
            log_w = log_inverse_density(clamped, embeddings.shape[1]).masked_fill(~allowed, float("-inf"))
            row_max = log_w.max(dim=1, keepdim=True).values.clamp_min(torch.finfo(log_w.dtype).min)
            weights = torch.exp(log_w - row_max)
            return weights / weights.sum(dim=1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probs = self.negative_probabilities(embeddings, labels)
        pos_mask, _ = same_label_masks(labels)
        has_neg = probs.sum(dim=1) > 0
        anchor, positive = torch.where(pos_mask & has_neg.unsqueeze(1))
        if anchor.numel() == 0:
            return anchor, positive, anchor.clone()
        if self.seed is not None and (self._generator is None or self._generator.device != labels.device):
            self._generator = torch.Generator(device=labels.device).manual_seed(self.seed)
        negative = sample_per_pair(probs, anchor, self._generator)
        return anchor, positive, negative
