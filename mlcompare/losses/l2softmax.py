"""L2-constrained softmax (crystal loss): features on a sphere of radius alpha, weights free."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import Classifier
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits, upcast_half
from mlcompare.losses.scale import Scale, make_scale


class L2Softmax(Classifier):
    """``L = CE(alpha * (x / |x|) W^T + b, y)``; ``W`` and ``b`` are NOT normalised.

    Ranjan et al., "L2-constrained Softmax Loss for Discriminative Face Verification", 2017
    (arXiv:1703.09507). ``alpha`` > 0 is a number (the paper fixes it; its lower bound is
    ``log(p (C - 2) / (1 - p))`` for target probability p), a learnable ``Scale`` table or any
    ``Scale``. ``weight [C, D]`` Xavier normal; ``bias [C]`` with ``bias=True`` (default off).
    """

    search_space = {"alpha": Dim(4.0, 64.0, log=True)}

    shown_params = ('alpha',)

    def __init__(self, *, num_classes: int, embedding_dim: int, alpha: float | Scale | dict = 16.0,
                 bias: bool = False) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="xavier", bias=bias)
        self.alpha = make_scale(alpha)

    def set_progress(self, step: int, total_steps: int) -> None:
        self.alpha.set_progress(step, total_steps)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        alpha = self.alpha()
        x = alpha * F.normalize(upcast_half(embeddings), dim=1)
        bias = None if self.bias is None else upcast_half(self.bias)
        logits = F.linear(x, upcast_half(self.weight).to(x.dtype), bias)
        self.stats = angle_stats(cosine_logits(embeddings.detach(), self.weight.detach()), labels)
        self.stats["s"] = alpha.detach()
        return F.cross_entropy(logits, labels)
