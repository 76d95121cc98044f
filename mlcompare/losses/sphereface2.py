"""SphereFace2: one binary (one-vs-all) classifier per class instead of a softmax over classes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import CosineClassifier
from mlcompare.losses.normalized import angle_stats, check_batch


class SphereFace2(CosineClassifier):
    """SphereFace2-C: per-class binary cross-entropy on cosine logits with a margin and a shared bias.

    .. math:: L = \\frac{lw}{r}\\Big[\\lambda \\log(1 + e^{-(r(g(\\cos\\theta_y) - m) + b)})
              + (1 - \\lambda) \\sum_{j \\ne y} \\log(1 + e^{r(g(\\cos\\theta_j) + m) + b})\\Big],
              \\qquad g(z) = 2\\big(\\tfrac{z + 1}{2}\\big)^t - 1

    averaged over the batch (the official code weighs each of its ``binary_cross_entropy_with_logits``
    terms by ``lw C / r`` and averages over all ``B x C`` of them, which is this). Wen et al.,
    "SphereFace2: Binary Classification is All You Need for Deep Face Recognition", ICLR 2022
    (arXiv:2108.01513). ``lambda`` (the official code's ``alpha``) balances positive and negative
    terms; ``b`` is one learnable bias, initialised in closed form as the official code
    (ydwen/opensphere ``SphereFace2C``). Defaults are the official code's: ``lambda_=0.7, r=40,
    m=0.4, t=3, lw=50``. Departs from it in how the class weights are kept normalised: the
    official code renormalises them in place before each step, we normalise them in the forward
    pass (as every normalised loss here), which gives the same logits. Stats add ``b``.
    """

    shown_params = ("r", "m")
    shard_refusal = "it is a sum of per-class binary terms with one bias shared by every class, not a softmax"
    # around the paper's r = 30-40 and m = 0.4 (SphereFace2-C)
    search_space = {"r": Dim(16.0, 64.0, log=True), "m": Dim(0.1, 0.5)}

    def __init__(self, *, num_classes: int, embedding_dim: int, lambda_: float = 0.7, r: float = 40.0, m: float = 0.4,
                 t: float = 3.0, lw: float = 50.0) -> None:
        if not (isinstance(r, (int, float)) and not isinstance(r, bool) and math.isfinite(r) and r > 0):
            raise ValueError(f"r (SphereFace2 scale) must be a finite number > 0, got {r!r}")
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=r)
        if not 0 < lambda_ < 1:
            raise ValueError(f"lambda_ (SphereFace2 weight of the positive term) must be in (0, 1), got {lambda_!r}")
        if not 0 <= m < 1:
            raise ValueError(f"m (SphereFace2 cosine margin) must be in [0, 1), got {m!r}")
        if not t > 0:
            raise ValueError(f"t (SphereFace2 similarity adjustment exponent) must be > 0, got {t!r}")
        if not lw > 0:
            raise ValueError(f"lw (SphereFace2 loss weight) must be > 0, got {lw!r}")
        self.lambda_, self.r, self.m, self.t, self.lw = float(lambda_), float(r), float(m), float(t), float(lw)
        self.bias = nn.Parameter(torch.tensor(self.initial_bias(num_classes)))

    def initial_bias(self, num_classes: int) -> float:
        """The official code's closed-form start for ``b`` (a balanced loss at ``cos theta = 0``)."""
        z = self.lambda_ / ((1.0 - self.lambda_) * (num_classes - 1.0))
        ay = self.r * (2.0 * 0.5 ** self.t - 1.0 - self.m)
        ai = self.r * (2.0 * 0.5 ** self.t - 1.0 + self.m)
        tmp = (1.0 - z) ** 2 + 4.0 * z * math.exp(ay - ai)
        return math.log(2.0 * z) - ai - math.log(1.0 - z + math.sqrt(tmp))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings)
        one_hot = torch.zeros_like(cos).scatter_(1, labels.unsqueeze(1), 1.0)
        g = 2.0 * ((cos + 1.0) / 2.0).clamp_min(0.0).pow(self.t) - 1.0
        logits = self.r * (g - self.m * (2.0 * one_hot - 1.0)) + self.bias
        weight = (self.lambda_ * one_hot + (1.0 - self.lambda_) * (1.0 - one_hot)) * (self.lw * self.num_classes / self.r)
        self.stats = angle_stats(cos, labels) | {"b": self.bias.detach().clone()}
        return F.binary_cross_entropy_with_logits(logits, one_hot, weight=weight)
