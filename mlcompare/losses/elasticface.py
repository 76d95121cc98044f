"""ElasticFace: per-sample margins drawn from a normal distribution (shared part of the Arc and Cos variants)."""
from __future__ import annotations

from typing import Any

import torch

from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.normalized import SumRanks, replace_target, target_of


class ElasticFace(MarginLogits):
    """``L = CE(s [psi(cos theta_y, m_i); cos theta_j], y)`` with ``m_i ~ N(m, std^2)`` drawn per sample.

    Boutros et al., "ElasticFace: Elastic Margin Loss for Deep Face Recognition", CVPR Workshops
    2022 (arXiv:2109.09416). The variants (``elasticface_arc``, ``elasticface_cos``) supply ``psi``.
    The margins come from a private ``torch.Generator`` seeded with ``seed`` (drawn on the CPU, so
    the same on every device); its state is part of the loss's state (``get_extra_state``), so a
    resumed run draws the margins an uninterrupted one would have. Margins are drawn on every
    forward (as the official code). ElasticFace+ (margins sorted by the target cosine) is not
    implemented. Stats add ``margin_mean``.

    Every rank of ``partial_fc`` draws the margins of the whole (gathered) batch from a generator
    seeded alike, so the ranks agree on each sample's margin without communicating.
    """

    def __init__(self, *, s: float, m: float, std: float, seed: int) -> None:
        super().__init__(s=s)
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

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:
        cos = cos.clamp(-1.0, 1.0)
        margins = self.draw_margins(embeddings.shape[0]).to(cos.device, cos.dtype)
        held, safe = labels >= 0, labels.clamp(min=0)
        cos_y = target_of(cos, safe)
        self.stats = {"margin_mean": margins.mean()}
        return replace_target(cos, safe, torch.where(held, self.psi(cos_y, margins), cos_y))

    def margin_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_margin_state(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"].cpu())
