"""CurricularFace: hard negatives re-weighted by a running curriculum parameter."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlcompare.losses.normalized import MarginHead, angle_stats, check_batch, replace_target, safe_acos, target_of


class CurricularFace(MarginHead):
    """``L = CE(s [phi(theta_y); N(t, cos theta_j)], y)``, an ArcFace target with re-weighted negatives.

    Huang et al., "CurricularFace: Adaptive Curriculum Learning Loss for Deep Face Recognition",
    CVPR 2020 (arXiv:2004.00288). ``phi(theta) = cos(theta + m)`` where ``theta + m < pi``, else
    ``cos theta - m sin m`` (ArcFace's fall-back, as the official code). A negative is hard when
    ``cos theta_j > cos(theta_y + m)`` and its logit becomes ``cos theta_j (t + cos theta_j)``;
    easy ones stay ``cos theta_j``. ``t <- alpha mean_i cos theta_{y_i} + (1 - alpha) t`` (no
    gradient; starts at 0; updated in training mode, before use, as the official code), so hard
    negatives are down-weighted early (t ~ 0) and emphasised later (t -> 1). Angles and ``m`` in
    radians. Defaults are the official code's (HuangYG123/CurricularFace): ``m=0.5, s=64``,
    momentum ``alpha=0.01``. ``t`` is a buffer: saved in ``state_dict`` and restored by ``--resume``.
    Stats add ``t`` and ``hard_fraction`` (hard negatives / all logits).
    """

    shown_params = ("s", "m")

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float = 64.0, m: float = 0.5,
                 alpha: float = 0.01) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=s)
        if not 0 < m < math.pi / 2:
            raise ValueError(f"m (CurricularFace angular margin, radians) must be in (0, pi/2), got {m!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (CurricularFace momentum of t) must be in (0, 1], got {alpha!r}")
        self.m, self.alpha = float(m), float(alpha)
        self.register_buffer("t", torch.tensor(0.0))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings).clamp(-1.0, 1.0)
        cos_y = target_of(cos, labels)
        with_margin = torch.cos(safe_acos(cos_y) + self.m)
        target = torch.where(cos_y > math.cos(math.pi - self.m), with_margin, cos_y - self.m * math.sin(self.m))
        if self.training:
            with torch.no_grad():
                self.t.copy_(cos_y.mean() * self.alpha + (1 - self.alpha) * self.t)
        hard = cos > with_margin.detach().unsqueeze(1)
        logits = replace_target(torch.where(hard, cos * (self.t + cos), cos), labels, target)
        self.stats = angle_stats(cos, labels) | {"t": self.t.clone(), "hard_fraction": hard.float().mean().detach()}
        return F.cross_entropy(self.scale_value(embeddings) * logits, labels)
