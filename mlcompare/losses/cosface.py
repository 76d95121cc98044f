"""CosFace / AM-Softmax / LMCL: an additive cosine margin."""
from __future__ import annotations

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.losses.margins import additive_cosine
from mlcompare.losses.scale import Scale


class CosFace(TargetMargin):
    """``L = -log exp(s (cos theta_y - m)) / (exp(s (cos theta_y - m)) + sum_{j!=y} exp(s cos theta_j))``.

    Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", CVPR 2018
    (arXiv:1801.09414); Wang et al., "Additive Margin Softmax", 2018 (arXiv:1801.05599).
    Features and class weights L2-normalised; ``theta`` in radians; ``m`` is a cosine margin
    (unitless), valid in ``[0, 1)``; paper values s=64, m=0.35 (here s=30 by default, the
    AM-Softmax/insightface choice for small class counts). ``s``: number, ``Scale`` or scale table.
    CosFace is ``combined`` with (m1, m2, m3) = (1, 0, m).
    """

    search_space = {"s": Dim(4.0, 128.0, log=True), "m": Dim(0.05, 0.8)}  # widened where reports/tuned ended (s 11, m 0.56)

    shown_params = ('s', 'm')

    def __init__(self, *, s: float | Scale | dict = 30.0, m: float = 0.35) -> None:
        super().__init__(s=s)
        if not 0 <= m < 1:
            raise ValueError(f"m (CosFace cosine margin) must be in [0, 1), got {m!r}")
        self.m = float(m)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return additive_cosine(cos_target, self.m)
