"""Softmax plus ring loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import Classifier
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits, upcast_half


class Ring(Classifier):
    """``L = CE(x W^T + b, y) + lambda / 2 * mean_i (|x_i| - R)^2`` with ``R`` learnt.

    Zheng et al., "Ring loss: Convex Feature Normalization for Face Recognition", CVPR 2018
    (arXiv:1803.00130): a soft feature normalisation; paper lambda = 0.01. ``R`` (the ring
    radius, parameter ``radius``) starts at ``r_init``, or, when ``r_init`` is None, at the mean
    feature norm of the first training batch. ``weight [C, D]`` Xavier normal, ``bias`` optional.
    Stats add ``radius`` and ``feature_norm_mean``.
    """

    search_space = {"lambda_r": Dim(1e-3, 0.1, log=True)}

    shown_params = ('lambda_r',)

    def __init__(self, *, num_classes: int, embedding_dim: int, lambda_r: float = 0.01, r_init: float | None = None,
                 bias: bool = False) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="xavier", bias=bias)
        if not lambda_r >= 0:
            raise ValueError(f"lambda_r (ring-loss weight) must be >= 0, got {lambda_r!r}")
        if r_init is not None and not r_init > 0:
            raise ValueError(f"r_init (initial ring radius) must be > 0 or None, got {r_init!r}")
        self.lambda_r = float(lambda_r)
        self.radius = nn.Parameter(torch.tensor(1.0 if r_init is None else float(r_init)))
        self.register_buffer("radius_set", torch.tensor(r_init is not None))  # saved with checkpoints
        self._radius_checked = False

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        norms = upcast_half(embeddings).norm(dim=1)
        if self.training and not self._radius_checked:  # reads the buffer once, not every step
            if not bool(self.radius_set):
                with torch.no_grad():
                    self.radius.fill_(norms.mean())
                    self.radius_set.fill_(True)
            self._radius_checked = True
        ce = F.cross_entropy(F.linear(embeddings, self.weight, self.bias), labels)
        ring = 0.5 * (norms - self.radius).pow(2).mean()
        self.stats = angle_stats(cosine_logits(embeddings.detach(), self.weight.detach()), labels)
        self.stats.update(radius=self.radius.detach().clone(), feature_norm_mean=norms.detach().mean())
        return ce + self.lambda_r * ring
