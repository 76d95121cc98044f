"""ArcFace: an additive angular margin."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.losses.margins import additive_angular
from mlcompare.losses.scale import Scale


class ArcFace(TargetMargin):
    """``L = -log exp(s cos(theta_y + m)) / (exp(s cos(theta_y + m)) + sum_{j!=y} exp(s cos theta_j))``.

    Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019
    (arXiv:1801.07698). Features and weights L2-normalised; ``theta`` and ``m`` in RADIANS
    (m=0.5 is 28.6 degrees; pytorch-metric-learning takes degrees), valid ``0 < m < pi/2``.
    Where ``theta_y + m > pi`` the target logit falls back to ``cos theta_y - m sin m`` (keeps it
    decreasing in theta); ``easy_margin=True`` instead applies the margin only where
    ``cos theta_y > 0``. ``acos`` is clamped so the loss and gradient are finite at
    ``cos theta = +-1``. ArcFace is ``combined`` with (m1, m2, m3) = (1, m, 0).
    """

    search_space = {"s": Dim(4.0, 128.0, log=True), "m": Dim(0.1, 0.8)}  # s widened: reports/tuned chose s = 13

    shown_params = ('s', 'm')

    def __init__(self, *, s: float | Scale | dict = 64.0, m: float = 0.5, easy_margin: bool = False) -> None:
        super().__init__(s=s)
        if not 0 < m < math.pi / 2:
            raise ValueError(f"m (ArcFace angular margin, radians) must be in (0, pi/2), got {m!r}")
        self.m = float(m)
        self.easy_margin = bool(easy_margin)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return additive_angular(cos_target, self.m, easy_margin=self.easy_margin)
