"""ElasticFace-Cos: a CosFace additive margin drawn per sample from N(m, std^2)."""
from __future__ import annotations

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.elasticface import ElasticFace


class ElasticCosFace(ElasticFace):
    """``psi = cos theta_y - m_i``, ``m_i ~ N(m, std^2)`` (see :class:`ElasticFace`).

    Boutros et al., "ElasticFace: Elastic Margin Loss for Deep Face Recognition", CVPRW 2022.
    Defaults are the official code's configuration for ElasticCosFace (fdbtrs/ElasticFace):
    ``s=64, m=0.35, std=0.05``.
    """

    shown_params = ("s", "m", "std")
    # the paper's ablation: m 0.35 with std 0.025-0.1; CosFace's usual margins; s as the other margin softmaxes
    search_space = {"s": Dim(8.0, 128.0, log=True), "m": Dim(0.2, 0.5), "std": Dim(0.0125, 0.1, log=True)}

    def __init__(self, *, s: float = 64.0, m: float = 0.35, std: float = 0.05, seed: int = 0) -> None:
        if not 0 < m < 2:
            raise ValueError(f"m (ElasticFace-Cos mean cosine margin) must be in (0, 2), got {m!r}")
        super().__init__(s=s, m=m, std=std, seed=seed)

    def psi(self, cos_target: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
        return cos_target - margins
