"""ElasticFace: per-sample margins drawn from a normal distribution (shared part of the Arc and Cos variants)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mlcompare.losses.normalized import MarginHead, angle_stats, check_batch, replace_target, target_of


class ElasticFace(MarginHead):
    """``L = CE(s [psi(cos theta_y, m_i); cos theta_j], y)`` with ``m_i ~ N(m, std^2)`` drawn per sample.

    Boutros et al., "ElasticFace: Elastic Margin Loss for Deep Face Recognition", CVPR Workshops
    2022 (arXiv:2109.09416). The variants (``elasticface_arc``, ``elasticface_cos``) supply ``psi``.
    The margins come from a private ``torch.Generator`` seeded with ``seed`` (drawn on the CPU, so
    the same on every device); its state is part of the loss's state (``get_extra_state``), so a
    resumed run draws the margins an uninterrupted one would have. Margins are drawn on every
    forward (as the official code). ElasticFace+ (margins sorted by the target cosine) is not
    implemented. Stats add ``margin_mean``.
    """

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float, m: float, std: float, seed: int) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=s)
        if not std >= 0:
            raise ValueError(f"std (ElasticFace margin standard deviation) must be >= 0, got {std!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed (ElasticFace margin generator) must be an integer >= 0, got {seed!r}")
        self.m, self.std, self.seed = float(m), float(std), seed
        self.generator = torch.Generator().manual_seed(seed)

    def psi(self, cos_target: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def draw_margins(self, n: int) -> torch.Tensor:
        """``[n]`` margins ``~ N(m, std^2)`` from the private generator (float32, CPU)."""
        return torch.normal(self.m, self.std, (n,), generator=self.generator)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings).clamp(-1.0, 1.0)
        margins = self.draw_margins(embeddings.shape[0]).to(cos.device, cos.dtype)
        logits = replace_target(cos, labels, self.psi(target_of(cos, labels), margins))
        self.stats = angle_stats(cos, labels) | {"margin_mean": margins.mean()}
        return F.cross_entropy(self.scale_value(embeddings) * logits, labels)

    def get_extra_state(self) -> dict[str, Any]:
        return super().get_extra_state() | {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        if "generator" in state:
            self.generator.set_state(state["generator"].cpu())
