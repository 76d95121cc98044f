"""Shared fixtures for the margin-loss tests: a 2-D, 3-class case at known angles.

Class weights sit at angles 0, 2pi/3, 4pi/3; a feature at angle ``alpha`` and norm ``r`` has
target angle ``|alpha|`` to class 0, known without ``acos``. ``written_loss`` evaluates each
loss's formula from angles computed with ``atan2`` (independent of the code under test).
"""
from __future__ import annotations

import math

import torch

CLASS_ANGLES = (0.0, 2 * math.pi / 3, 4 * math.pi / 3)


def weights_2d(norms=(1.0, 1.0, 1.0)) -> torch.Tensor:
    return torch.tensor([[n * math.cos(a), n * math.sin(a)] for n, a in zip(norms, CLASS_ANGLES)], dtype=torch.float64)


def features_2d(alphas, norm: float = 1.0) -> torch.Tensor:
    return torch.tensor([[norm * math.cos(a), norm * math.sin(a)] for a in alphas], dtype=torch.float64)


def angles_atan2(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` angles in [0, pi] between 2-D rows, by atan2 (no acos)."""
    d = torch.atan2(x[:, 1:2], x[:, 0:1]) - torch.atan2(w[:, 1], w[:, 0]).unsqueeze(0)
    d = torch.remainder(d + math.pi, 2 * math.pi) - math.pi
    return d.abs()


def ce_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log softmax`` written out (not F.cross_entropy)."""
    target = logits.gather(1, labels[:, None]).squeeze(1)
    return (torch.log(torch.exp(logits).sum(1)) - target).mean()
