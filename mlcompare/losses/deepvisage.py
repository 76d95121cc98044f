"""DeepVisage: softmax on coordinate-wise normalised features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.losses.ccl import CCL
from mlcompare.losses.normalized import angle_stats, check_batch


class DeepVisage(CCL):
    """``L = CE(x~ W^T, y)``, ``x~ = (x - mu) / sqrt(var + eps)`` per coordinate, mean over the batch.

    Hasnat et al., "DeepVisage: Making face recognition simple yet with
    powerful generalization skills", ICCV 2017 workshops (arXiv:1703.08388). Its feature
    normalisation (FN) is batch normalisation without scale and shift on the embedding, followed by a
    plain softmax classifier: class weights ``W [num_classes, embedding_dim]`` are free (Xavier
    normal, no bias), unlike CCL's unit class vectors, and there is no margin. So this is CCL's
    centring with CCL's logit ``|x~| cos theta_j`` replaced by ``w_j^T x~``; the statistics,
    ``momentum`` and ``eps`` (validated as there) are CCL's, batch statistics in training and running
    ones (``running_mean`` / ``running_var`` buffers, resumed exactly) otherwise.

    DeepVisage scores the normalised feature; mlcompare scores the backbone's embedding, before
    FN, as for every loss. No official code that we know of. The loss has no hyperparameter of its
    own to search.

    Stats: ``theta_target`` / ``theta_other`` (radians, between normalised features and class
    weights) and ``feature_norm`` (mean ``|x~|``).
    """

    shown_params = ()
    search_space = {}

    def __init__(self, *, num_classes: int, embedding_dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, m=0.0, momentum=momentum, eps=eps)
        nn.init.xavier_normal_(self.weight)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        centred = self.centralize(embeddings, update=True)
        cos, norm = self.class_logits(centred)
        self.stats = angle_stats(cos, labels) | {"feature_norm": norm.detach().mean()}
        return F.cross_entropy(F.linear(centred, self.weight.to(centred.dtype)), labels)
