"""COCO: the congenerous cosine loss, softmax over scaled cosines to learnable class centroids."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import Classifier
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits


def recommended_alpha(num_classes: int, p: float) -> float:
    """``alpha = 1/2 log((K - 1) p / (1 - p))``: the smallest scale at which a feature lying on its
    centroid, with the ``K - 1`` other centroids at the far side (cosine -1), gets probability ``p``.

    >>> round(recommended_alpha(1000, 0.9), 4)
    4.552
    """
    return 0.5 * math.log((num_classes - 1) * p / (1.0 - p))


class COCO(Classifier):
    """``L = -log softmax(alpha * cos theta)_y``, ``cos theta_k = <x/|x|, c_k/|c_k|>``, mean over the batch.

    Liu, Li & Wang, "Rethinking Feature Discrimination and Polymerization for Large-scale
    Recognition", NIPS 2017 workshop (arXiv:1710.00870; COCO v2, after "Learning Deep Features via
    Congenerous Cosine Loss for Person Recognition", arXiv:1702.06890). ``c_k`` are learnable class
    centroids ``[num_classes, embedding_dim]`` (Xavier normal, as the official ``CenterProjection``
    layer's filler); features are scaled to norm ``alpha`` and centroids to norm 1, so the logits are
    ``alpha cos theta_k`` with ``theta`` in radians. No bias, no margin.

    ``alpha=None`` (default) takes the paper's lower bound derived from the number of classes ``K``
    and a target probability ``p`` (:func:`recommended_alpha`): ``alpha = 1/2 log((K-1) p/(1-p))``,
    the scale at which a feature on its centroid with every other centroid antipodal reaches
    probability ``p``; a number sets ``alpha`` directly. Valid: ``alpha > 0``, ``0 < p < 1``, and
    the formula must come out positive (``(K-1) p > 1 - p``).

    What the official Caffe code (github.com/sciencefans/coco_loss, ``materials_for_face``) does
    differently, and what we follow: its face model fixes the scale to 21.475 for 87,020 classes
    (a number, not the formula), trains the centroids at 10x the learning rate and adds an auxiliary
    plain-softmax loss (weight 0.4) on the unnormalised feature; its README adds that on PIPA the
    feature and centroid norms were learnable scalars initialised to 100 and 30. We follow the
    paper's single loss: fixed ``alpha``, unit centroids, no auxiliary softmax, the trainer's
    learning rate for the centroids.

    Stats: ``theta_target`` / ``theta_other`` (radians) and ``alpha``.
    """

    shown_params = ("p",)
    # alpha defaults to the formula (None), so the search runs over the target probability
    search_space = {"p": Dim(0.6, 0.999)}

    def __init__(self, *, num_classes: int, embedding_dim: int, alpha: float | None = None, p: float = 0.9) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="xavier")
        if not 0.0 < p < 1.0:
            raise ValueError(f"p (COCO target probability behind the default alpha) must be in (0, 1), got {p!r}")
        if alpha is None:
            alpha = recommended_alpha(num_classes, p)
            if alpha <= 0:
                raise ValueError(f"p={p!r} gives alpha={alpha:.3g} <= 0 for {num_classes} classes; "
                                 f"p must exceed 1/{num_classes}")
        elif isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < math.inf:
            raise ValueError(f"alpha (COCO feature scale) must be a number in (0, inf) or None, got {alpha!r}")
        self.alpha = float(alpha)
        self.p = float(p)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = cosine_logits(embeddings, self.weight)
        self.stats = angle_stats(cos, labels) | {"alpha": cos.new_tensor(self.alpha)}
        return F.cross_entropy(self.alpha * cos, labels)
