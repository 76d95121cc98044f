"""What every loss with class weights shares: the sizes, the weight rows and how they start, an
optional bias, and the cosines to the rows that the angle figures read.

``Classifier`` is the base of the nine losses that own a ``[num_classes, embedding_dim]`` weight
(softmax, L2-softmax, center, ring, COCO, AdaCos, CCL and DeepVisage, L-Softmax) and of the margin
softmax and Partial FC; ``CosineClassifier`` adds the scale ``s`` of the normalised losses that are
not one margin on a softmax (Circle, sub-centre ArcFace, UniFace, SphereFace2).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from mlcompare.losses.base import Loss
from mlcompare.losses.normalized import check_sizes, cosine_logits
from mlcompare.losses.scale import Scale, make_scale, scale_value


def _normal(weight: torch.Tensor) -> None:
    nn.init.normal_(weight, std=0.01)


# how the class weights start: insightface's normal (std 0.01) for the normalised losses, Xavier
# normal for the softmax-type ones whose weight norms enter the logits
INITS: dict[str, Callable[[torch.Tensor], object]] = {"normal": _normal, "xavier": nn.init.xavier_normal_}


class Classifier(Loss):
    """A loss with class weights ``weight`` ``[rows, embedding_dim]`` (``rows`` = ``num_classes`` unless
    a subclass holds more, sub-centres, or fewer, a shard) and, with ``bias=True``, ``bias`` ``[num_classes]``.

    ``init``: a key of :data:`INITS`. The angle figures' class centres are the weight rows
    (:meth:`angle_cosines`); a subclass that scores against something else overrides it.
    """

    family = "classification"

    def __init__(self, *, num_classes: int, embedding_dim: int, init: str, bias: bool = False,
                 rows: int | None = None) -> None:
        super().__init__()
        check_sizes(num_classes, embedding_dim)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(rows or num_classes, embedding_dim))
        INITS[init](self.weight)
        self.bias = nn.Parameter(torch.zeros(num_classes)) if bias else None

    def class_cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, rows]`` cosines to the weight rows."""
        return cosine_logits(embeddings, self.weight)

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """Cosines to the classifier's rows, the class centres of the angle figures."""
        return self.class_cosines(embeddings)


class CosineClassifier(Classifier):
    """Class weights (normal, std 0.01) and a scale ``s``: a number, a ``Scale`` or a scale table
    (``scale.py``); ``s=None`` means the feature norm ``|x_i|`` (:func:`scale.scale_value`)."""

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float | Scale | dict | None,
                 rows: int | None = None) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="normal", rows=rows)
        self.scale = None if s is None else make_scale(s)

    def set_progress(self, step: int, total_steps: int) -> None:
        if self.scale is not None:
            self.scale.set_progress(step, total_steps)

    def scale_value(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scalar ``s``, or ``[B, 1]`` feature norms when ``s`` is None."""
        return scale_value(self.scale, embeddings)
