"""AdaFace: a margin adapted to image quality, read from the feature norm."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.normalized import SumRanks, replace_target, safe_acos, target_of, upcast_half

EPS = 1e-3  # the official code's clamp of cosines, angles and the std denominator


class AdaFace(MarginLogits):
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
    initialisation (ours: normal, std 0.01, as every margin softmax) and in computing ``|x|`` here from
    the raw embedding (the official backbone returns the norm beside the normalised feature).
    ``mu`` and ``sigma`` are buffers: saved in ``state_dict`` and restored by ``--resume``.
    Needs a batch of at least 2 (an unbiased std). Stats add ``margin_scaler`` (mean z),
    ``batch_mean``, ``batch_std``.

    The norms are per sample, so a rank of ``partial_fc`` that sees the whole (gathered) batch
    computes the same ``mu``, ``sigma`` and ``z`` as every other rank: nothing to sum over ranks.
    """

    shown_params = ("s", "m", "h")
    # the paper's ablation (sec. 4.2) spans m 0.2-0.6 and h 0.33-1; s as the other margin softmaxes
    search_space = {"s": Dim(8.0, 128.0, log=True), "m": Dim(0.2, 0.6), "h": Dim(0.1, 1.0)}

    def __init__(self, *, s: float = 64.0, m: float = 0.4, h: float = 0.333, t_alpha: float = 0.01) -> None:
        super().__init__(s=s)
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

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:
        if embeddings.shape[0] < 2:
            raise ValueError(f"AdaFace needs a batch of at least 2 (its norm statistics use an unbiased std), "
                             f"got {embeddings.shape[0]}")
        cos = cos.clamp(-1.0 + EPS, 1.0 - EPS)
        norms = upcast_half(embeddings).detach().norm(dim=1).clamp(0.001, 100.0)
        if self.training:
            with torch.no_grad():
                self.batch_mean.copy_(norms.mean() * self.t_alpha + (1 - self.t_alpha) * self.batch_mean)
                self.batch_std.copy_(norms.std() * self.t_alpha + (1 - self.t_alpha) * self.batch_std)
        z = self.margin_scaler(norms)
        held, safe = labels >= 0, labels.clamp(min=0)
        cos_y = target_of(cos, safe)
        target = torch.cos((safe_acos(cos_y) - self.m * z).clamp(EPS, math.pi - EPS)) - (self.m + self.m * z)
        self.stats = {"margin_scaler": z.mean(), "batch_mean": self.batch_mean.clone(),
                      "batch_std": self.batch_std.clone()}
        return replace_target(cos, safe, torch.where(held, target, cos_y))
