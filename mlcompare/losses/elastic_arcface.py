"""ElasticFace-Arc: an ArcFace angular margin drawn per sample from N(m, std^2)."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.elasticface import ElasticFace
from mlcompare.losses.normalized import safe_acos


class ElasticArcFace(ElasticFace):
    """``psi = cos(theta_y + m_i)``, ``m_i ~ N(m, std^2)``, radians (see :class:`ElasticFace`).

    Boutros et al., "ElasticFace: Elastic Margin Loss for Deep Face Recognition", CVPRW 2022.
    Defaults are the official code's configuration for ElasticArcFace (fdbtrs/ElasticFace):
    ``s=64, m=0.5, std=0.05``. As the official code, no fall-back past ``theta_y + m_i > pi``
    (ArcFace's ``cos theta - m sin m``): there the target logit rises again with theta; we follow
    the official code, since that is what the paper's results were trained with.
    """

    shown_params = ("s", "m", "std")
    # the paper's ablation: m 0.45-0.5 with std 0.0125-0.1; s as the other margin softmaxes
    search_space = {"s": Dim(8.0, 128.0, log=True), "m": Dim(0.3, 0.7), "std": Dim(0.0125, 0.1, log=True)}

    def __init__(self, *, s: float = 64.0, m: float = 0.5, std: float = 0.05, seed: int = 0) -> None:
        if not 0 < m < math.pi / 2:
            raise ValueError(f"m (ElasticFace-Arc mean angular margin, radians) must be in (0, pi/2), got {m!r}")
        super().__init__(s=s, m=m, std=std, seed=seed)

    def psi(self, cos_target: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
        return torch.cos(safe_acos(cos_target) + margins)
