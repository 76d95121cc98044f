"""Centralized Coordinate Learning: coordinate-wise centred and scaled features, unit class vectors."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlcompare.losses.classifier import Classifier
from mlcompare.losses.margins import additive_angular
from mlcompare.losses.normalized import (angle_stats, check_batch, cosine_logits, replace_target,
                                         target_of, upcast_half)
from mlcompare.config.search_space import Dim


class CCL(Classifier):
    """``L = CE(|x~| [cos theta_j for j != y; cos(theta_y + m) for j = y], y)``, ``x~ = (x - mu) / sqrt(var + eps)``.

    Qi & Zhang, "Face Recognition via Centralized Coordinate Learning", 2018 (arXiv:1801.05678).
    Each coordinate of the feature is centred and scaled (``mu``, ``var``: ``[embedding_dim]``), so
    that features spread over the whole coordinate space instead of one orthant; class vectors
    ``w_j`` are L2-normalised, so the logit ``w_j^T x~ = |x~| cos theta_j`` has the centred feature's
    norm as its scale (no fixed ``s``). The target angle gets the additive angular margin ``m``
    (radians; ``cos(theta_y + m)`` where ``theta_y + m <= pi``, else ``cos theta_y - m sin m``, as
    ArcFace's). Valid: ``0 <= m < pi/2``, ``0 < momentum <= 1``, ``eps > 0``.

    Statistics as batch normalisation without scale and shift: in training the batch's own mean and
    (biased) variance, differentiated through, while ``running_mean`` / ``running_var`` (buffers,
    in the ``state_dict``, so ``--resume`` continues them exactly) follow
    ``r <- (1 - momentum) r + momentum * batch`` (unbiased variance, as ``torch.nn.BatchNorm1d``);
    out of training (and for the angle figures, which never update them) the running statistics.
    A training batch needs at least 2 samples; under DDP each rank uses its own batch.

    What we do not reproduce, and why: the paper calls its margin adaptive; here ``m`` is a fixed
    number (default 0.3, ours), the ArcFace form. No official code was released that we know of. As
    for every loss here, the report scores the backbone's embedding, before this centring.

    Stats: ``theta_target`` / ``theta_other`` (radians, between centred features and class
    vectors) and ``feature_norm`` (mean ``|x~|``, the effective scale).
    """

    shown_params = ("m",)
    search_space = {"m": Dim(0.0, 0.8)}

    def __init__(self, *, num_classes: int, embedding_dim: int, m: float = 0.3, momentum: float = 0.1,
                 eps: float = 1e-5) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="normal")
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not 0 <= m < math.pi / 2:
            raise ValueError(f"m (CCL angular margin, radians) must be in [0, pi/2), got {m!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 < momentum <= 1:
            raise ValueError(f"momentum (running-statistics update rate) must be in (0, 1], got {momentum!r}")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
            raise ValueError(f"eps (variance floor) must be a number in (0, inf), got {eps!r}")
        self.m = float(m)
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.register_buffer("running_mean", torch.zeros(embedding_dim))
        self.register_buffer("running_var", torch.ones(embedding_dim))

    def centralize(self, embeddings: torch.Tensor, *, update: bool) -> torch.Tensor:
        """``[B, D]`` centred, scaled features: batch statistics (and a running update) when
        ``update`` and training, the running statistics otherwise."""
        # float32 at least: a variance of bf16 features loses the small coordinates' spread
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = upcast_half(embeddings).to(self.running_mean.dtype)
            batch = update and self.training
            return F.batch_norm(x, self.running_mean, self.running_var, None, None, training=batch,
                                momentum=self.momentum, eps=self.eps)

    def class_logits(self, centred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(cos theta [B, C], |x~| [B, 1])`` for centred features."""
        return cosine_logits(centred, self.weight), centred.norm(dim=1, keepdim=True)

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        return cosine_logits(self.centralize(embeddings, update=False), self.weight)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        centred = self.centralize(embeddings, update=True)
        cos, norm = self.class_logits(centred)
        target = additive_angular(target_of(cos, labels), self.m) if self.m else target_of(cos, labels)
        self.stats = angle_stats(cos, labels) | {"feature_norm": norm.detach().mean()}
        return F.cross_entropy(norm * replace_target(cos, labels, target), labels)
