"""X2-Softmax: a quadratic target logit in the angle, whose margin grows with the angle between classes."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.losses.normalized import safe_acos


class X2Softmax(TargetMargin):
    """``L = CE(s [a (theta_y - h)^2 + k; cos theta_j], y)``: the target logit is a downward parabola in
    the target angle ``theta_y`` (radians), the other logits stay ``cos theta_j``.

    Xu et al., "X2-Softmax: Margin Adaptive Loss Function for Face Recognition", Expert Systems
    with Applications 2024 (arXiv:2312.05281). Against ``cos theta`` the parabola leaves a margin
    that changes with the angle, so the margin between two classes grows with the angle between
    their centres. Defaults are the official code's training command (XieZixiUSTC/X2-Softmax
    ``work.sh``): ``s=64, a=-0.9, h=0, k=0.65``. Departs from the official code in the gradient:
    there the target logit is written under ``no_grad``, so its gradient passes to ``cos theta_y``
    unchanged (a straight-through estimate); here it is the true derivative of the paper's formula
    (``acos`` with a finite gradient at +-1), as for every other margin in mlcompare.
    """

    shown_params = ("s", "a", "h", "k")
    # around the official setting (a=-0.9, h=0, k=0.65), keeping the parabola below 1 at theta = 0
    search_space = {"s": Dim(8.0, 128.0, log=True), "a": Dim(-1.2, -0.6), "h": Dim(0.0, 0.3), "k": Dim(0.5, 0.8)}

    def __init__(self, *, s: float = 64.0, a: float = -0.9, h: float = 0.0, k: float = 0.65) -> None:
        super().__init__(s=s)
        if not a < 0:
            raise ValueError(f"a (X2-Softmax curvature) must be < 0 (a downward parabola), got {a!r}")
        if not 0 <= h < math.pi:
            raise ValueError(f"h (X2-Softmax vertex angle, radians) must be in [0, pi), got {h!r}")
        if not (isinstance(k, (int, float)) and -1 < k <= 1):
            raise ValueError(f"k (X2-Softmax logit at the vertex) must be in (-1, 1], got {k!r}")
        self.a, self.h, self.k = float(a), float(h), float(k)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return self.a * (safe_acos(cos_target) - self.h) ** 2 + self.k
