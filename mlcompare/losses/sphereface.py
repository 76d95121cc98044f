"""SphereFace (A-Softmax): L-Softmax's multiplicative angular margin with normalised weights."""
from __future__ import annotations

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.lsoftmax import LambdaAnnealing, annealed, check_integer_margin
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.losses.margins import angular_psi
from mlcompare.losses.normalized import SumRanks
from mlcompare.losses.scale import Scale


class SphereFace(TargetMargin):
    """``f_j = |x| cos theta_j`` for ``j != y``; ``f_y = |x| (lambda cos theta_y + psi(theta_y)) / (1 + lambda)``.

    Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR 2017
    (arXiv:1704.08063). Class weights normalised, features not: the scale is ``|x_i|``
    (``s=None``, the paper) or a fixed/learnt ``s`` (normalised features, insightface's variant:
    then SphereFace is ``combined`` with (m1, m2, m3) = (m, 0, 0) once lambda = 0).
    ``psi(theta) = (-1)^k cos(m theta) - 2k``; ``m`` integer >= 1, default 4 (the paper's);
    radians. Lambda annealing over steps as in the SphereFace release: base 1000, gamma 0.12,
    power 1, lambda_min 5.
    """

    search_space = {"m": Dim(2, 4, integer=True)}

    shown_params = ('m',)

    def __init__(self, *, m: int = 4, s: float | Scale | dict | None = None, lambda_base: float = 1000.0,
                 lambda_gamma: float = 0.12, lambda_power: float = 1.0, lambda_min: float = 5.0) -> None:
        super().__init__(s=s)
        self.m = check_integer_margin(m)
        self.annealing = LambdaAnnealing(base=lambda_base, gamma=lambda_gamma, power=lambda_power, lambda_min=lambda_min)

    def set_progress(self, step: int, total_steps: int) -> None:
        super().set_progress(step, total_steps)
        self.annealing.set_progress(step, total_steps)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return annealed(cos_target, angular_psi(cos_target, float(self.m)), self.annealing.value)

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:
        logits = super().logits(cos, labels, embeddings, sum_ranks)
        self.stats = {"lambda": torch.tensor(self.annealing.value, device=cos.device)}
        return logits
