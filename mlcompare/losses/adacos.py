"""AdaCos: cosine softmax with an adaptive scale and no margin."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlcompare.losses.classifier import Classifier
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits, target_of


class AdaCos(Classifier):
    """``L = CE(s~ cos theta, y)``, no margin; ``s~`` fixed or adapted each step.

    Zhang et al., "AdaCos: Adaptively Scaling Cosine Logits for Effectively Learning Deep Face
    Representations", CVPR 2019 (arXiv:1905.00292). Fixed AdaCos (``dynamic=False``, eq. 12):
    ``s~ = sqrt(2) log(C - 1)``. Dynamic AdaCos (``dynamic=True``, the default, Algorithm 1),
    before each training step's loss:

    .. math:: s^{(t)} = \\frac{\\log B_{avg}^{(t)}}{\\cos \\min(\\pi/4, \\theta_{med}^{(t)})}, \\qquad
              B_{avg}^{(t)} = \\frac{1}{N} \\sum_i \\sum_{k \\ne y_i} e^{s^{(t-1)} \\cos \\theta_{ik}}

    with ``theta_med`` the median target angle of the batch (``torch.median``: the lower median for
    an even batch), starting from the fixed value, without gradient. The authors released no
    code; this follows the paper's Algorithm 1. ``s`` is a buffer: saved in ``state_dict`` and
    restored by ``--resume``. Needs ``num_classes >= 3`` (``log(C - 1) > 0``). Stats add ``s``.
    """

    shown_params = ("dynamic",)
    shard_refusal = "its dynamic scale averages exp(s cos theta) over every class, which sampled shards do not see"

    def __init__(self, *, num_classes: int, embedding_dim: int, dynamic: bool = True) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="normal")
        if num_classes < 3:
            raise ValueError(f"AdaCos needs num_classes >= 3 (its scale is sqrt(2) log(C - 1)), got {num_classes}")
        if not isinstance(dynamic, bool):
            raise ValueError(f"dynamic (AdaCos adaptive scale) must be true or false, got {dynamic!r}")
        self.dynamic = dynamic
        self.register_buffer("s", torch.tensor(math.sqrt(2.0) * math.log(num_classes - 1)))

    def update_scale(self, cos: torch.Tensor, labels: torch.Tensor) -> None:
        """Algorithm 1's step: the new ``s`` from this batch's cosines and the previous ``s``."""
        with torch.no_grad():
            others = torch.ones_like(cos, dtype=torch.bool).scatter_(1, labels.unsqueeze(1), False)
            b_avg = torch.where(others, torch.exp(self.s * cos), torch.zeros_like(cos)).sum() / cos.shape[0]
            theta_med = torch.acos(target_of(cos, labels).clamp(-1.0, 1.0)).median()
            self.s.copy_(torch.log(b_avg) / torch.cos(theta_med.clamp(max=math.pi / 4)))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = cosine_logits(embeddings, self.weight)
        if self.dynamic and self.training:
            self.update_scale(cos, labels)
        self.stats = angle_stats(cos, labels) | {"s": self.s.clone()}
        return F.cross_entropy(self.s * cos, labels)
