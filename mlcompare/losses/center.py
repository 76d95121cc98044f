"""Softmax plus center loss."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import Classifier
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits, upcast_half


class Center(Classifier):
    """``L = CE(x W^T + b, y) + lambda / 2 * mean_i |x_i - c_{y_i}|^2``.

    Wen et al., "A Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016.
    Both terms are batch means (the paper sums both over the mini-batch: the same ratio).
    Centres ``centers [C, D]`` are a buffer updated as the paper's Algorithm 1, not by the
    optimiser: after the loss is formed, in training mode,
    ``c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j)``; the center term's
    gradient reaches only the features. Paper values lambda = 0.003, alpha = 0.5.
    ``weight [C, D]`` Xavier normal, ``bias`` optional (default off). Stats add ``center_loss``.
    """

    search_space = {"lambda_c": Dim(1e-4, 0.1, log=True)}

    shown_params = ('lambda_c',)

    def __init__(self, *, num_classes: int, embedding_dim: int, lambda_c: float = 0.003, alpha: float = 0.5,
                 bias: bool = False) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="xavier", bias=bias)
        if not lambda_c >= 0:
            raise ValueError(f"lambda_c (center-loss weight) must be >= 0, got {lambda_c!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha (center learning rate) must be in (0, 1], got {alpha!r}")
        self.lambda_c, self.alpha = float(lambda_c), float(alpha)
        self.register_buffer("centers", torch.zeros(num_classes, embedding_dim))
        torch.nn.init.xavier_normal_(self.centers)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        x = upcast_half(embeddings)
        ce = F.cross_entropy(F.linear(embeddings, self.weight, self.bias), labels)
        diff = x - self.centers[labels].to(x.dtype)
        center_loss = 0.5 * diff.pow(2).sum(1).mean()
        if self.training:
            with torch.no_grad():
                delta = torch.zeros_like(self.centers).index_add_(0, labels, -diff.detach().to(self.centers.dtype))
                count = torch.zeros(self.num_classes, device=labels.device).index_add_(
                    0, labels, torch.ones(len(labels), device=labels.device))
                self.centers -= self.alpha * delta / (1 + count).unsqueeze(1).to(self.centers.dtype)
        self.stats = angle_stats(cosine_logits(embeddings.detach(), self.weight.detach()), labels)
        self.stats["center_loss"] = center_loss.detach()
        return ce + self.lambda_c * center_loss
