"""MagFace: an ArcFace margin that grows with the feature norm, plus a norm regulariser."""
from __future__ import annotations

import math

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.margins import additive_angular
from mlcompare.losses.normalized import SumRanks, replace_target, target_of, upcast_half
from mlcompare.losses.scale import Scale


class MagFace(MarginLogits):
    """``L = CE(s [cos(theta_y + m(a)); cos theta_j], y) + lambda_g * mean g(a)``, ``a = k |x|``.

    Meng et al., "MagFace: A Universal Representation for Face Recognition and Quality
    Assessment", CVPR 2021 (arXiv:2103.06627). ``a`` is clamped to ``[l_a, u_a]`` (as the
    official code); ``m(a) = (u_m - l_m) / (u_a - l_a) * (a - l_a) + l_m`` (radians), linear in
    ``a``; ``g(a) = 1 / a + a / u_a^2``. The margin follows ArcFace (fall-back past pi,
    ``easy_margin``). Defaults are the paper's: s=64, l_a=10, u_a=110, l_m=0.45, u_m=0.8,
    lambda_g=35. Gradients flow into ``a`` through both ``m(a)`` and ``g(a)``.

    Changed from the paper: the magnitude is ``a = k |x|`` with the fixed gain
    ``k = (l_a + u_a) / (2 sqrt(D))`` (``norm_gain=True``, the default; ``False`` is the paper's
    ``a = |x|``). Why: every mlcompare backbone ends its embedding head in a BatchNorm1d, whose
    output starts with a batch mean squared norm of ``D``: with D = 128, ``|x|`` sits near
    ``sqrt(128) = 11.3``, at the bottom of ``[10, 110]``. Only the BatchNorm's scale can move
    that mean (fixed at 1 in iresnet, as in arcface_torch; learnable in resnet-face and
    mobilefacenet), and a larger ``a`` means a larger margin, which cross-entropy resists
    while only ``g`` pushes up: at our budgets the norms stayed near 11, the smaller ones
    clamped at ``l_a`` (no gradient), and the margin stayed near ``l_m`` (0.455 on average) for
    every sample. The gain starts the batch's mean magnitude mid-range, ``(l_a + u_a) / 2``,
    leaving the backbone to decide which samples get the large ones. A scalar, so that ``a`` is
    a fixed multiple of the embedding's own norm: ranking test images by ``|x|`` (MagFace's
    quality) is ranking them by ``a``, and cosines do not change. Not learnable: a learned
    scalar gain collapsed in a tiny run (5.3 to 0.0014 in 30 SGD steps: cross-entropy lowers
    every margin by lowering ``a``), and once every ``a`` clamps at ``l_a`` neither ``m(a)`` nor
    ``g(a)`` passes a gradient back.

    Measured side effect (``quality`` comparison, seed 0, 300 steps): the margin now varies
    (batch std 0.04-0.08 rad; 0.006 without the gain in the tiny test run), but within the
    BatchNorm's mean squared norm the backbone gives a few images very large norms (3 % of
    test images above ``u_a``) and the rest small ones (median ``a`` 18.5): most margins stay low;
    verification accuracy fell from 0.918 (``margins`` report, ``norm_gain=False``) to 0.853.

    Stats add ``feature_norm_mean``, ``feature_norm_std`` (unclamped ``|x|``),
    ``magnitude_mean``, ``magnitude_std`` (unclamped ``k |x|``), ``margin_mean``,
    ``margin_std`` (over the batch: 0 when every sample gets the same margin) and ``loss_g``.

    ``a`` is per sample, read from the whole (gathered) batch: every rank of ``partial_fc`` computes
    the same margins and the same ``g``, nothing to sum over ranks.
    """

    search_space = {"s": Dim(8.0, 128.0, log=True), "lambda_g": Dim(1.0, 100.0, log=True)}

    def __init__(self, *, s: float | Scale | dict = 64.0, l_a: float = 10.0, u_a: float = 110.0, l_m: float = 0.45,
                 u_m: float = 0.8, lambda_g: float = 35.0, easy_margin: bool = False, norm_gain: bool = True) -> None:
        super().__init__(s=s)
        if not 0 < l_a < u_a:
            raise ValueError(f"l_a, u_a (feature-norm bounds) must satisfy 0 < l_a < u_a, got l_a={l_a!r}, u_a={u_a!r}")
        if not 0 <= l_m <= u_m < math.pi / 2:
            raise ValueError(f"l_m, u_m (margins, radians) must satisfy 0 <= l_m <= u_m < pi/2, got l_m={l_m!r}, u_m={u_m!r}")
        if not lambda_g >= 0:
            raise ValueError(f"lambda_g (regulariser weight) must be >= 0, got {lambda_g!r}")
        self.l_a, self.u_a, self.l_m, self.u_m = float(l_a), float(u_a), float(l_m), float(u_m)
        self.lambda_g = float(lambda_g)
        self.easy_margin = bool(easy_margin)
        self.norm_gain = bool(norm_gain)

    def gain(self, embedding_dim: int) -> float:
        """``k = (l_a + u_a) / (2 sqrt(D))`` with ``norm_gain``, else 1."""
        return (self.l_a + self.u_a) / (2.0 * math.sqrt(embedding_dim)) if self.norm_gain else 1.0

    def margin_of_norm(self, a: torch.Tensor) -> torch.Tensor:
        """``m(a)``, radians, for clamped norms ``a``."""
        return (self.u_m - self.l_m) / (self.u_a - self.l_a) * (a - self.l_a) + self.l_m

    def regulariser(self, a: torch.Tensor) -> torch.Tensor:
        """``g(a) = 1 / a + a / u_a^2``, minimal at ``a = u_a``."""
        return 1.0 / a + a / self.u_a ** 2

    def magnitudes(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``|x|``, ``k |x|`` and the clamped ``a``, each ``[N]``."""
        norms = upcast_half(embeddings).norm(dim=1)
        magnitudes = self.gain(embeddings.shape[1]) * norms
        return norms, magnitudes, magnitudes.clamp(self.l_a, self.u_a)

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:
        norms, magnitudes, a = self.magnitudes(embeddings)
        m = self.margin_of_norm(a)
        held, safe = labels >= 0, labels.clamp(min=0)
        cos_y = target_of(cos, safe)
        target = additive_angular(cos_y, m, easy_margin=self.easy_margin)
        loss_g = self.regulariser(a).mean()
        self.stats = dict(feature_norm_mean=norms.detach().mean(), feature_norm_std=norms.detach().std(unbiased=False),
                          magnitude_mean=magnitudes.detach().mean(), magnitude_std=magnitudes.detach().std(unbiased=False),
                          margin_mean=m.detach().mean(), margin_std=m.detach().std(unbiased=False),
                          loss_g=loss_g.detach())
        return replace_target(cos, safe, torch.where(held, target, cos_y))

    def penalty(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        return self.lambda_g * self.regulariser(self.magnitudes(embeddings)[2]).mean()
