"""Conversions between the miners' tuple forms, for losses that accept either."""
from __future__ import annotations

import torch


def pairs_to_triplets(
    a1: torch.Tensor, p: torch.Tensor, a2: torch.Tensor, n: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every ``(a, p, n)`` with ``(a, p)`` a positive pair and ``(a, n)`` a negative pair of the same anchor.

    Materialises ``sum_a P_a * N_a`` triplets (pytorch-metric-learning's ``convert_to_triplets``).
    """
    pos_i, neg_i = torch.where(a1.unsqueeze(1) == a2.unsqueeze(0))
    return a1[pos_i], p[pos_i], n[neg_i]


def triplets_to_pairs(
    a: torch.Tensor, p: torch.Tensor, n: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(a, p, a, n)``: the positive and negative pair of each triplet."""
    return a, p, a, n
