"""AdaFace: a margin adapted to image quality, read from the feature norm."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlcompare.losses.normalized import (MarginHead, angle_stats, check_batch, replace_target, safe_acos, target_of,
                                         upcast_half)

EPS = 1e-3  # the official code's clamp of cosines, angles and the std denominator


class AdaFace(MarginHead):
    """``L = CE(s [cos(clip(theta_y - m z, eps, pi - eps)) - (m + m z); cos theta_j], y)``.

    Kim, Jain & Liu, "AdaFace: Quality Adaptive Margin for Face Recognition", CVPR 2022
    (arXiv:2204.00964). ``z = clip(h (|x| - mu) / (sigma + eps), -1, 1)`` is the feature norm
    ``|x|`` (clipped to [0.001, 100], no gradient) standardised by running batch statistics
    ``mu <- t_alpha mean|x| + (1 - t_alpha) mu`` and ``sigma <- t_alpha std|x| + (1 - t_alpha) sigma``
    (unbiased std, updated in training mode before use; start 20 and 100, as the official code).
    A low-norm (low-quality) sample, z = -1, gets ArcFace's ``cos(theta + m)``, which weighs its
    hard (large-angle) samples less; z = 0 gives CosFace's ``cos theta - m``; a high-norm one, z = 1,
    ``cos(theta - m) - 2m``, which weighs hard samples more (the paper's sec. 3.3).
    Angles and ``m`` in radians. Defaults are the official code's (mk-minchul/AdaFace, its
    training scripts): ``m=0.4, h=0.333, s=64, t_alpha=0.01``; ``eps = 1e-3``.

    Follows the official code: all cosines are clamped to ``[-1 + eps, 1 - eps]`` (the
    non-target logits therefore equal the clamped cosines). Departs from it in the class-weight
    initialisation (ours: normal, std 0.01, as every MarginHead) and in computing ``|x|`` here from
    the raw embedding (the official backbone returns the norm beside the normalised feature).
    ``mu`` and ``sigma`` are buffers: saved in ``state_dict`` and restored by ``--resume``.
    Needs a batch of at least 2 (an unbiased std). Stats add ``margin_scaler`` (mean z),
    ``batch_mean``, ``batch_std``.
    """

    shown_params = ("s", "m", "h")

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float = 64.0, m: float = 0.4, h: float = 0.333,
                 t_alpha: float = 0.01) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=s)
        if not 0 <= m < math.pi / 2:
            raise ValueError(f"m (AdaFace margin, radians) must be in [0, pi/2), got {m!r}")
        if not h > 0:
            raise ValueError(f"h (AdaFace norm-concentration factor) must be > 0, got {h!r}")
        if not 0 < t_alpha <= 1:
            raise ValueError(f"t_alpha (AdaFace running-statistics momentum) must be in (0, 1], got {t_alpha!r}")
        self.m, self.h, self.t_alpha = float(m), float(h), float(t_alpha)
        self.register_buffer("batch_mean", torch.tensor(20.0))
        self.register_buffer("batch_std", torch.tensor(100.0))

    def margin_scaler(self, norms: torch.Tensor) -> torch.Tensor:
        """``z = clip(h (|x| - mu) / (sigma + eps), -1, 1)`` with the current running statistics."""
        return ((norms - self.batch_mean) / (self.batch_std + EPS) * self.h).clamp(-1.0, 1.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        if embeddings.shape[0] < 2:
            raise ValueError(f"AdaFace needs a batch of at least 2 (its norm statistics use an unbiased std), "
                             f"got {embeddings.shape[0]}")
        cos = self.class_cosines(embeddings).clamp(-1.0 + EPS, 1.0 - EPS)
        norms = upcast_half(embeddings).detach().norm(dim=1).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                self.batch_mean.copy_(norms.mean() * self.t_alpha + (1 - self.t_alpha) * self.batch_mean)
                self.batch_std.copy_(norms.std() * self.t_alpha + (1 - self.t_alpha) * self.batch_std)
        z = self.margin_scaler(norms)
        theta = safe_acos(target_of(cos, labels))
        target = torch.cos((theta - self.m * z).clamp(EPS, math.pi - EPS)) - (self.m + self.m * z)
        logits = replace_target(cos, labels, target)
        self.stats = angle_stats(cos, labels) | {"margin_scaler": z.mean(), "batch_mean": self.batch_mean.clone(),
                                                 "batch_std": self.batch_std.clone()}
        return F.cross_entropy(self.scale_value(embeddings) * logits, labels)
