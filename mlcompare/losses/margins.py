"""Margin functions: the target cosine ``cos theta_y`` in, the target logit (before scale) out.

Angles in radians. These are pure functions of tensors (shape ``[B]``) so that every margin
loss, and a sharded classifier later, applies the same formula. Gradients flow through the
margin (nothing here runs under ``no_grad`` except the integer branch index ``k``, which is
piecewise constant).
"""
from __future__ import annotations

import math

import torch

from mlcompare.losses.normalized import safe_acos


def additive_cosine(cos_target: torch.Tensor, m: float) -> torch.Tensor:
    """CosFace / AM-Softmax: ``cos theta - m``."""
    return cos_target - m


def additive_angular(cos_target: torch.Tensor, m: float | torch.Tensor, *, easy_margin: bool = False) -> torch.Tensor:
    """ArcFace: ``cos(theta + m)`` where ``theta + m <= pi``, else ``cos theta - m sin m``.

    The fall-back keeps the logit decreasing in theta past ``pi - m`` (ArcFace paper, sec. 2.1
    and insightface's ``cos theta > cos(pi - m)`` test). With ``easy_margin`` the margin applies
    only where ``cos theta > 0`` and the plain ``cos theta`` is kept elsewhere. ``m`` may be a
    ``[B]`` tensor (MagFace's per-sample margin).

    >>> import math, torch
    >>> additive_angular(torch.tensor([1.0, 0.0, -1.0]), 0.5)  # theta = 0, pi/2, pi
    tensor([ 0.8776, -0.4794, -1.2397])
    """
    theta = safe_acos(cos_target)
    with_margin = torch.cos(theta + m)
    if easy_margin:
        return torch.where(cos_target > 0, with_margin, cos_target)
    m_t = torch.as_tensor(m, dtype=cos_target.dtype, device=cos_target.device)
    return torch.where(theta + m_t <= math.pi, with_margin, cos_target - m_t * torch.sin(m_t))


def angular_psi(cos_target: torch.Tensor, m1: float, m2: float = 0.0) -> torch.Tensor:
    """``psi = (-1)^k cos(phi) - 2k`` with ``phi = m1 theta + m2`` and ``k = floor(phi / pi)``.

    L-Softmax / SphereFace's monotone extension of ``cos(m theta)`` beyond ``theta = pi / m``
    (L-Softmax eq. 6; SphereFace eq. 7): continuous, decreasing from ``cos m2`` at ``theta = 0``.

    >>> import math, torch
    >>> angular_psi(torch.cos(torch.tensor([0.0, math.pi / 4, math.pi / 2, math.pi])), 4.0)
    tensor([ 1., -1., -3., -7.])
    """
    theta = safe_acos(cos_target)
    phi = m1 * theta + m2
    k = torch.floor(phi.detach() / math.pi)
    sign = 1.0 - 2.0 * torch.remainder(k, 2.0)
    return sign * torch.cos(phi) - 2.0 * k


def combined_margin(cos_target: torch.Tensor, m1: float, m2: float, m3: float, *, easy_margin: bool = False) -> torch.Tensor:
    """insightface combined margin ``cos(m1 theta + m2) - m3``.

    Past ``m1 theta + m2 = pi``: with ``m1 == 1`` ArcFace's fall-back (``additive_angular``),
    with ``m1 > 1`` SphereFace's ``psi`` extension. ``m2 == 0 and m1 == 1`` is CosFace exactly
    (no ``acos``). SphereFace = (m1, 0, 0), ArcFace = (1, m, 0), CosFace = (1, 0, m).
    """
    if m1 == 1.0:
        angular = cos_target if m2 == 0.0 else additive_angular(cos_target, m2, easy_margin=easy_margin)
    else:
        angular = angular_psi(cos_target, m1, m2)
    return angular - m3 if m3 != 0.0 else angular
