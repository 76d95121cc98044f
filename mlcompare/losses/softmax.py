"""Softmax: a linear classifier on the embedding and cross-entropy."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.losses.base import Loss
from mlcompare.losses.normalized import angle_stats, check_batch, check_sizes, cosine_logits


class Softmax(Loss):
    """``L = CE(x W^T + b, y)``, mean over the batch.

    Shapes: ``embeddings [B, D]``, ``labels [B]`` int64; ``weight [C, D]`` (Xavier normal),
    ``bias [C]`` only with ``bias=True`` (default off, as in the margin-loss papers' baselines,
    so that the decision boundaries are angular). The embedding is taken before this classifier.
    Stats: ``theta_target`` / ``theta_other`` (radians) between features and class weights.
    """

    family = "classification"

    def __init__(self, *, num_classes: int, embedding_dim: int, bias: bool = False) -> None:
        super().__init__()
        check_sizes(num_classes, embedding_dim)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_normal_(self.weight)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` class logits ``x W^T + b``."""
        return F.linear(embeddings, self.weight, self.bias)

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """Cosines to the classifier's rows, the class centres of the angle figures."""
        return cosine_logits(embeddings, self.weight)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        self.stats = angle_stats(cosine_logits(embeddings.detach(), self.weight.detach()), labels)
        return F.cross_entropy(self.logits(embeddings), labels)
