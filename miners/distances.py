"""The distance every miner (and the pair losses) uses: Euclidean, on L2-normalised embeddings by default.

On the unit hypersphere ``d(x, y) = sqrt(2 - 2 cos(x, y))`` lies in ``[0, 2]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# sqrt has an infinite derivative at 0; flooring d^2 here keeps gradients finite for
# coincident points and moves distances by at most 1e-6.
_MIN_SQUARED_DISTANCE = 1e-12


def distance_matrix(
    x: torch.Tensor,
    y: torch.Tensor | None = None,
    *,
    normalize: bool = True,
    squared: bool = False,
) -> torch.Tensor:
    """Pairwise Euclidean distances ``[len(x), len(y)]`` (``y`` defaults to ``x``).

    Args:
        x: ``[N, D]`` float.
        y: ``[M, D]`` float, or None for ``x`` itself.
        normalize: L2-normalise rows first (the default everywhere in ``miners``).
        squared: return ``||x - y||^2`` instead of ``||x - y||``.

    Computed as ``|x|^2 + |y|^2 - 2 x.y`` (one matrix product, like ``torch.cdist`` on
    large inputs), clamped at 0 before the square root. Differentiable.
    """
    # Distances are at least float32 and outside autocast: near-duplicates differ in the 4th digit,
    # which bf16/fp16 round away (and sqrt near 0 overflows their gradient).
    x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    y = y.float() if y is not None and y.dtype in (torch.float16, torch.bfloat16) else y
    with torch.autocast(x.device.type, enabled=False):
        return _distance_matrix(x, y, normalize=normalize, squared=squared)


def _distance_matrix(x: torch.Tensor, y: torch.Tensor | None, *, normalize: bool, squared: bool) -> torch.Tensor:
    if normalize:
        x = F.normalize(x, p=2, dim=1)
        y = x if y is None else F.normalize(y, p=2, dim=1)
    elif y is None:
        y = x
    sq = (x * x).sum(1, keepdim=True) + (y * y).sum(1).unsqueeze(0) - 2.0 * (x @ y.t())
    sq = sq.clamp_min(0.0)
    if squared:
        return sq
    return sq.clamp_min(_MIN_SQUARED_DISTANCE).sqrt()


def same_label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive, negative)`` boolean ``[B, B]`` masks: same label off the diagonal, different label."""
    same = labels.unsqueeze(1) == labels.unsqueeze(0)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return positive, ~same
