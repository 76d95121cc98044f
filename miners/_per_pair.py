"""Per anchor-positive pair work done on a padded ``[B, max positives]`` grid instead of gathered ``[P, B]`` rows.

Positive pairs come from ``torch.where`` on a ``[B, B]`` mask, so they are grouped by anchor;
pair ``i`` sits at ``(anchor[i], slot[i])`` of the grid. Row-wise ops (``searchsorted`` against
a sorted ``[B, B]`` matrix) then cost ``B x max positives`` instead of ``P x B`` memory.
"""
from __future__ import annotations

import torch


def grid_slots(anchor: torch.Tensor, num_rows: int) -> tuple[torch.Tensor, int]:
    """``(slot [P], width)``: the column of each pair in its anchor's row of the grid."""
    if anchor.numel() == 0:
        return anchor.clone(), 0
    counts = torch.bincount(anchor, minlength=num_rows)
    row_start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(anchor.numel(), device=anchor.device) - row_start[anchor]
    return slot, int(counts.max())


def on_grid(values: torch.Tensor, anchor: torch.Tensor, slot: torch.Tensor, num_rows: int, width: int,
            fill: float) -> torch.Tensor:
    """Scatter per-pair ``values`` into a ``[num_rows, width]`` grid filled with ``fill``."""
    grid = values.new_full((num_rows, width), fill)
    grid[anchor, slot] = values
    return grid


def sample_per_pair(weights: torch.Tensor, anchor: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One column per pair, drawn with probability ``weights[anchor] / weights[anchor].sum()`` (inverse CDF).

    Every anchor in ``anchor`` must have a positive row sum. Zero-weight columns are never drawn:
    ``searchsorted(..., right=True)`` returns the first column whose cumulative sum exceeds ``u``,
    and a zero-weight column repeats its predecessor's sum.
    """
    slot, width = grid_slots(anchor, weights.shape[0])
    cdf = torch.cumsum(weights.double(), dim=1)
    total = cdf[:, -1:]
    u = torch.rand((weights.shape[0], width), generator=generator, device=weights.device, dtype=torch.float64)
    # u * total < total: a draw can never fall past the last column of positive weight
    u = torch.minimum(u * total, torch.nextafter(total, torch.zeros_like(total)))
    drawn = torch.searchsorted(cdf, u.contiguous(), right=True)
    return drawn[anchor, slot]
