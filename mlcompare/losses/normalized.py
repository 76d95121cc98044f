"""Shared steps of the normalised (cosine) classification losses, as functions of tensors.

insightface's design (``arcface_torch/losses.py``): cosine logits -> margin function on the
target logit -> scale -> cross-entropy. ``cosine_logits`` is the first step,
``replace_target`` splices the margin logit back in, ``angle_stats`` is what every
normalised loss logs; ``sum_ranks`` functions carry a running statistic across the ranks of a
sharded classifier. The margin step is ``margin_logits.py``, the class weights ``classifier.py``.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def check_sizes(num_classes: int, embedding_dim: int) -> None:
    """One-line ``ValueError`` for a classifier with fewer than 2 classes or no dimensions."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be an integer >= 1, got {embedding_dim!r}")


def check_batch(embeddings: torch.Tensor, labels: torch.Tensor, embedding_dim: int) -> None:
    """Shape checks without reading values (no host-device synchronisation)."""
    if embeddings.ndim != 2 or embeddings.shape[1] != embedding_dim:
        raise ValueError(f"embeddings must have shape [batch, {embedding_dim}], got {list(embeddings.shape)}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape [{embeddings.shape[0]}], got {list(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64 class indices, got dtype {labels.dtype}")


def upcast_half(x: torch.Tensor) -> torch.Tensor:
    # margins act on cosines within 1e-3 of +-1; half precision would round them away
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``cos theta_ij = <x_i/|x_i|, w_j/|w_j|>``, shape ``[B, C]``, at least float32.

    Autocast is turned off here for the same reason as ``upcast_half``. A zero-norm feature or
    weight gives cosine 0 (``F.normalize`` divides by ``max(|x|, 1e-12)``), i.e. theta = pi/2.
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = F.normalize(upcast_half(embeddings), dim=1)
        w = F.normalize(upcast_half(weight).to(x.dtype), dim=1)
        return F.linear(x, w)


def safe_acos(cos: torch.Tensor) -> torch.Tensor:
    """``acos(clamp(cos, -1, 1))`` in value, with a gradient that stays finite at +-1.

    ``d acos / d x = -1 / sqrt(1 - x^2)`` is infinite at +-1. The gradient is taken through
    ``acos(clamp(cos, -1 + eps, 1 - eps))`` (0 at exactly +-1, where the cosine is extremal and
    the true chain rule gives 0 as well), while the value is the exact ``acos``: clamping the value
    would move theta = 0 to 5e-4 rad in float32.
    """
    eps = torch.finfo(cos.dtype).eps
    exact = torch.acos(cos.detach().clamp(-1.0, 1.0))
    safe = torch.acos(cos.clamp(-1.0 + eps, 1.0 - eps))
    return safe + (exact - safe.detach())


def target_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits[i, labels[i]]``, shape ``[B]``."""
    return logits.gather(1, labels.unsqueeze(1)).squeeze(1)


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Copy of ``logits`` with ``logits[i, labels[i]] = target[i]`` (differentiable in both)."""
    return logits.scatter(1, labels.unsqueeze(1), target.unsqueeze(1).to(logits.dtype))


def angle_stats(cos: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached mean target angle ``theta_target`` and mean non-target angle ``theta_other`` (radians)."""
    with torch.no_grad():
        theta = torch.acos(cos.clamp(-1.0, 1.0))
        target = target_of(theta, labels)
        b, c = theta.shape
        other = (theta.sum() - target.sum()) / (b * (c - 1))
        return {"theta_target": target.mean(), "theta_other": other}


SumRanks = Callable[[torch.Tensor], torch.Tensor]


def one_rank(x: torch.Tensor) -> torch.Tensor:
    """The ``sum_ranks`` of a classifier that holds every class: nothing to add."""
    return x


def target_cosines(cos: torch.Tensor, labels: torch.Tensor, sum_ranks: SumRanks = one_rank) -> torch.Tensor:
    """Detached ``cos theta_{i, y_i}`` for every row ``[N]``, also where another rank holds the class.

    ``labels`` index the columns of ``cos`` or are -1; each row's target lives on exactly one rank,
    so the sum over ranks of (target where held, else 0) is the target on every rank.
    """
    with torch.no_grad():
        held = target_of(cos, labels.clamp(min=0))
        return sum_ranks(torch.where(labels >= 0, held, torch.zeros_like(held)))
