"""Softmax: a linear classifier on the embedding and cross-entropy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.losses.classifier import Classifier
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits


class Softmax(Classifier):
    """``L = CE(x W^T + b, y)``, mean over the batch.

    Shapes: ``embeddings [B, D]``, ``labels [B]`` int64; ``weight [C, D]`` (Xavier normal),
    ``bias [C]`` only with ``bias=True`` (default off, as in the margin-loss papers' baselines,
    so that the decision boundaries are angular). The embedding is taken before this classifier.
    Stats: ``theta_target`` / ``theta_other`` (radians) between features and class weights.
    """

    def __init__(self, *, num_classes: int, embedding_dim: int, bias: bool = False) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="xavier", bias=bias)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` class logits ``x W^T + b``."""
        return F.linear(embeddings, self.weight, self.bias)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        self.stats = angle_stats(cosine_logits(embeddings.detach(), self.weight.detach()), labels)
        return F.cross_entropy(self.logits(embeddings), labels)
