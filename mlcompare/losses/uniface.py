"""UniFace: the unified cross-entropy, one threshold (a learnable bias) for all classes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import CosineClassifier
from mlcompare.losses.normalized import angle_stats, check_batch


class UniFace(CosineClassifier):
    """Unified cross-entropy with a cosine margin (UCE-m, with lambda and r):

    .. math:: L = \\log(1 + e^{-(s(\\cos\\theta_y - m) - b)}) + \\lambda \\sum_{j \\ne y} \\log(1 + e^{s \\cos\\theta_j - b})

    averaged over the batch. Zhou et al., "UniFace: Unified Cross-Entropy Loss for Deep Face
    Recognition", ICCV 2023. ``b`` is one learnable bias (a threshold shared by every class, the
    "unified" part), initialised to ``log(10 r C)`` as the official code (CVI-SZU/UniFace
    ``Unified_Cross_Entropy_Loss``): ``r`` scales the initial threshold, ``lam`` weighs the
    negatives. Defaults are the official code's: ``s=64, m=0.4, lam=1, r=1``. As the official
    code, each exponent is clamped to ``[-s, s]`` before ``log(1 + e^z)`` (computed here as
    ``softplus``, which is the same function); the clamp stops the gradient of a term whose
    exponent lies outside. Stats add ``b``.
    """

    shown_params = ("s", "m")
    shard_refusal = "it is a sum of per-class binary terms with one bias shared by every class, not a softmax"
    # the paper's margins (m 0.3-0.5 around its 0.4) and the usual margin-softmax scales
    search_space = {"s": Dim(8.0, 128.0, log=True), "m": Dim(0.2, 0.6)}

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float = 64.0, m: float = 0.4, lam: float = 1.0,
                 r: float = 1.0) -> None:
        if not (isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s > 0):
            raise ValueError(f"s (UniFace scale) must be a finite number > 0, got {s!r}")
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=s)
        if not 0 <= m < 2:
            raise ValueError(f"m (UniFace cosine margin) must be in [0, 2), got {m!r}")
        if not lam > 0:
            raise ValueError(f"lam (UniFace weight of the negative terms) must be > 0, got {lam!r}")
        if not r > 0:
            raise ValueError(f"r (UniFace scale of the initial bias log(10 r C)) must be > 0, got {r!r}")
        self.s, self.m, self.lam, self.r = float(s), float(m), float(lam), float(r)
        self.bias = nn.Parameter(torch.tensor(math.log(num_classes * r * 10)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings)
        positive = torch.zeros_like(cos, dtype=torch.bool).scatter_(1, labels.unsqueeze(1), True)
        p_loss = F.softplus(-(self.s * (cos - self.m) - self.bias).clamp(-self.s, self.s))
        n_loss = F.softplus((self.s * cos - self.bias).clamp(-self.s, self.s)) * self.lam
        self.stats = angle_stats(cos, labels) | {"b": self.bias.detach().clone()}
        return torch.where(positive, p_loss, n_loss).sum(dim=1).mean()
