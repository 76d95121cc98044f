"""Triplet enumeration without materialising ``B^3`` candidates.

Each anchor's negatives are sorted by distance once (``B log B`` per row); for an
anchor-positive pair the negatives whose distance lies in an interval are then a contiguous
run of that sorted row, found with ``searchsorted``. Work and memory are ``O(B^2 log B)`` plus
the size of the output, instead of ``O(B^3)``.
"""
from __future__ import annotations

import torch


class SortedNegatives:
    """Per-anchor negatives sorted by distance, and the positive pairs with their distances."""

    def __init__(self, dist: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor) -> None:
        self.sorted_dist, self.sorted_idx = dist.masked_fill(~neg_mask, float("inf")).sort(dim=1)
        self.num_neg = neg_mask.sum(dim=1)
        # Anchors without a negative form no triplet; drop their positive pairs up front.
        self.anchor, self.positive = torch.where(pos_mask & (self.num_neg > 0).unsqueeze(1))
        self.ap_dist = dist[self.anchor, self.positive]

    def rank_above(self, threshold: torch.Tensor, *, strict: bool) -> torch.Tensor:
        """Per positive pair, the number of its anchor's negatives with distance ``<= threshold`` (``strict``) or ``< threshold``.

        That count is also the rank of the first negative ``> threshold`` (``strict``) or ``>= threshold``.
        ``threshold`` is ``[P]``, aligned with ``self.anchor``.
        """
        rows = self.sorted_dist[self.anchor]
        rank = torch.searchsorted(rows, threshold.unsqueeze(1).contiguous(), right=strict).squeeze(1)
        return torch.minimum(rank, self.num_neg[self.anchor])

    def expand(self, start: torch.Tensor, end: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All triplets ``(a, p, sorted_idx[a, r])`` for ``start <= r < end`` per positive pair."""
        counts = (end - start).clamp_min(0)
        anchor = self.anchor.repeat_interleave(counts)
        positive = self.positive.repeat_interleave(counts)
        first = start.repeat_interleave(counts)
        run_start = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
        offset = torch.arange(anchor.numel(), device=anchor.device) - run_start
        negative = self.sorted_idx[anchor, first + offset]
        return anchor, positive, negative
