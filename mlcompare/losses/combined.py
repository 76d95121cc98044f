"""Combined margin (insightface): SphereFace, ArcFace and CosFace margins in one formula."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.losses.margins import combined_margin
from mlcompare.losses.scale import Scale


class Combined(TargetMargin):
    """Target logit ``s (cos(m1 theta_y + m2) - m3)``, non-target ``s cos theta_j``, then cross-entropy.

    Deng et al., ArcFace (arXiv:1801.07698), sec. 2.3 / insightface ``CombinedMarginLoss``
    (their face setting: m1=1, m2=0.3, m3=0.2, s=64). ``m1`` multiplicative angular
    (SphereFace), ``m2`` additive angular in radians (ArcFace), ``m3`` additive cosine (CosFace).
    Past ``m1 theta + m2 = pi``: ArcFace's fall-back ``cos theta - m2 sin m2 - m3`` when m1 == 1
    (or ``easy_margin``), SphereFace's psi extension when m1 > 1.
    Valid: ``m1 >= 1``, ``0 <= m2 < pi/2``, ``0 <= m3 < 1``; ``easy_margin`` only with m1 == 1.
    """

    search_space = {"s": Dim(8.0, 128.0, log=True), "m2": Dim(0.0, 0.6), "m3": Dim(0.0, 0.4)}

    shown_params = ('s', 'm1', 'm2', 'm3')

    def __init__(self, *, s: float | Scale | dict = 64.0, m1: float = 1.0, m2: float = 0.3, m3: float = 0.2,
                 easy_margin: bool = False) -> None:
        super().__init__(s=s)
        if not m1 >= 1:
            raise ValueError(f"m1 (multiplicative angular margin) must be >= 1, got {m1!r}")
        if not 0 <= m2 < math.pi / 2:
            raise ValueError(f"m2 (additive angular margin, radians) must be in [0, pi/2), got {m2!r}")
        if not 0 <= m3 < 1:
            raise ValueError(f"m3 (additive cosine margin) must be in [0, 1), got {m3!r}")
        if easy_margin and m1 != 1:
            raise ValueError(f"easy_margin needs m1 == 1 (an ArcFace-type margin), got m1={m1!r}")
        self.m1, self.m2, self.m3 = float(m1), float(m2), float(m3)
        self.easy_margin = bool(easy_margin)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return combined_margin(cos_target, self.m1, self.m2, self.m3, easy_margin=self.easy_margin)
