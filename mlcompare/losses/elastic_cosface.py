"""ElasticFace-Cos: a CosFace additive margin drawn per sample from N(m, std^2)."""
from __future__ import annotations

import torch

from mlcompare.losses.elasticface import ElasticFace


class ElasticCosFace(ElasticFace):
    """``psi = cos theta_y - m_i``, ``m_i ~ N(m, std^2)`` (see :class:`ElasticFace`).

    Boutros et al., "ElasticFace: Elastic Margin Loss for Deep Face Recognition", CVPRW 2022.
    Defaults are the official code's configuration for ElasticCosFace (fdbtrs/ElasticFace):
    ``s=64, m=0.35, std=0.05``.
    """

    shown_params = ("s", "m", "std")

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float = 64.0, m: float = 0.35, std: float = 0.05,
                 seed: int = 0) -> None:
        if not 0 < m < 2:
            raise ValueError(f"m (ElasticFace-Cos mean cosine margin) must be in (0, 2), got {m!r}")
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=s, m=m, std=std, seed=seed)

    def psi(self, cos_target: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
        return cos_target - margins
