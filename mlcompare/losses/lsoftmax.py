"""Large-margin softmax (L-Softmax), and the lambda annealing it shares with SphereFace."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.losses.classifier import Classifier
from mlcompare.losses.margins import angular_psi
from mlcompare.losses.normalized import (upcast_half, angle_stats, check_batch, cosine_logits,
                                         replace_target, target_of)
from mlcompare.config.search_space import Dim


def check_integer_margin(m: int) -> int:
    if isinstance(m, bool) or not isinstance(m, int) and not (isinstance(m, float) and m.is_integer()) or m < 1:
        raise ValueError(f"m (multiplicative angular margin) must be an integer >= 1, got {m!r}")
    return int(m)


class LambdaAnnealing:
    """``lambda(step) = max(lambda_min, base * (1 + gamma * step) ** (-power))``.

    The target logit is ``(lambda |x| cos theta + |x| psi(theta)) / (1 + lambda)``: softmax at the
    start (lambda large), the margin logit as lambda falls; the schedule of the SphereFace /
    L-Softmax releases (SphereFace: base 1000, gamma 0.12, power 1, lambda_min 5). ``base = 0``
    turns annealing off (pure margin logit). ``step`` comes from the trainer's ``set_progress``.
    """

    def __init__(self, *, base: float, gamma: float, power: float, lambda_min: float) -> None:
        for name, value in (("lambda_base", base), ("lambda_gamma", gamma), ("lambda_power", power),
                            ("lambda_min", lambda_min)):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.base, self.gamma, self.power, self.lambda_min = float(base), float(gamma), float(power), float(lambda_min)
        self.step = 0

    def set_progress(self, step: int, total_steps: int) -> None:
        self.step = int(step)

    @property
    def value(self) -> float:
        if self.base == 0:
            return 0.0
        return max(self.lambda_min, self.base * (1.0 + self.gamma * self.step) ** (-self.power))


def annealed(cos_target: torch.Tensor, psi: torch.Tensor, lam: float) -> torch.Tensor:
    """``(lambda cos theta + psi(theta)) / (1 + lambda)``."""
    return psi if lam == 0 else (lam * cos_target + psi) / (1.0 + lam)


class LSoftmax(Classifier):
    """``f_j = |W_j| |x| cos theta_j`` for ``j != y``; ``f_y = |W_y| |x| psi(theta_y)``; ``L = CE(f, y)``.

    Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML 2016
    (arXiv:1612.02295). ``psi(theta) = (-1)^k cos(m theta) - 2k`` for
    ``theta in [k pi / m, (k + 1) pi / m]``; ``m`` an integer >= 1 (m = 1 is softmax without
    bias); weights and features NOT normalised; ``theta`` in radians. ``f_y`` is blended with the
    softmax logit by ``LambdaAnnealing`` over steps (``lambda_*`` parameters; L-Softmax anneals to
    ``lambda_min = 0``). ``weight [C, D]`` Xavier normal.
    """

    search_space = {"m": Dim(2, 4, integer=True)}

    shown_params = ('m',)

    def __init__(self, *, num_classes: int, embedding_dim: int, m: int = 4, lambda_base: float = 1000.0,
                 lambda_gamma: float = 0.12, lambda_power: float = 1.0, lambda_min: float = 0.0) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="xavier")
        self.m = check_integer_margin(m)
        self.annealing = LambdaAnnealing(base=lambda_base, gamma=lambda_gamma, power=lambda_power, lambda_min=lambda_min)

    def set_progress(self, step: int, total_steps: int) -> None:
        self.annealing.set_progress(step, total_steps)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = cosine_logits(embeddings, self.weight)
        lam = self.annealing.value
        target = annealed(target_of(cos, labels), angular_psi(target_of(cos, labels), float(self.m)), lam)
        x_norm = upcast_half(embeddings).norm(dim=1, keepdim=True)
        w_norm = upcast_half(self.weight).to(cos.dtype).norm(dim=1)
        logits = replace_target(cos, labels, target) * x_norm * w_norm
        self.stats = angle_stats(cos, labels)
        self.stats["lambda"] = torch.tensor(lam, device=cos.device)
        return F.cross_entropy(logits, labels)
