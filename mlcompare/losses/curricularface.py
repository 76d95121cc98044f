"""CurricularFace: hard negatives re-weighted by a running curriculum parameter."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.normalized import SumRanks, replace_target, safe_acos, target_cosines, target_of


class CurricularFace(MarginLogits):
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

    Both ``t`` and the hard-negative test read every row's target cosine, which lives on one rank of
    ``partial_fc``: it is summed over ranks (:func:`target_cosines`), so ``t`` is the same on every rank.
    """

    shown_params = ("s", "m")
    # ArcFace's margin range around the paper's 0.5; s as the other margin softmaxes
    search_space = {"s": Dim(8.0, 128.0, log=True), "m": Dim(0.2, 0.7)}

    def __init__(self, *, s: float = 64.0, m: float = 0.5, alpha: float = 0.01) -> None:
        super().__init__(s=s)
        if not 0 < m < math.pi / 2:
            raise ValueError(f"m (CurricularFace angular margin, radians) must be in (0, pi/2), got {m!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (CurricularFace momentum of t) must be in (0, 1], got {alpha!r}")
        self.m, self.alpha = float(m), float(alpha)
        self.register_buffer("t", torch.tensor(0.0))

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:
        cos = cos.clamp(-1.0, 1.0)
        held, safe = labels >= 0, labels.clamp(min=0)
        cos_y = target_of(cos, safe)
        with_margin = torch.cos(safe_acos(cos_y) + self.m)
        target = torch.where(cos_y > math.cos(math.pi - self.m), with_margin, cos_y - self.m * math.sin(self.m))
        every_cos_y = target_cosines(cos, labels, sum_ranks)
        if self.training:
            with torch.no_grad():
                self.t.copy_(every_cos_y.mean() * self.alpha + (1 - self.alpha) * self.t)
        threshold = torch.cos(safe_acos(every_cos_y) + self.m)
        hard = cos > threshold.unsqueeze(1)
        negatives = torch.where(hard, cos * (self.t + cos), cos)
        counts = sum_ranks(torch.stack([hard.sum(), torch.tensor(hard.numel(), device=cos.device)]).to(cos.dtype))
        self.stats = {"t": self.t.clone(), "hard_fraction": counts[0] / counts[1]}
        return replace_target(negatives, safe, torch.where(held, target, target_of(negatives, safe)))
