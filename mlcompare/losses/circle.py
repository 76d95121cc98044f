"""Circle loss, class-level form (class weights as proxies)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import CosineClassifier
from mlcompare.losses.normalized import angle_stats, check_batch
from mlcompare.losses.scale import Scale


class Circle(CosineClassifier):
    """``L = log(1 + sum_{j != y} exp(gamma a_n (s_n - D_n)) * exp(-gamma a_p (s_p - D_p)))``.

    Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization", CVPR 2020
    (arXiv:2002.10857), eq. 6 with class proxies: ``s_p = cos theta_y``, ``s_n = cos theta_j``
    to the normalised class weights. Self-paced weights ``a_p = [O_p - s_p]_+``,
    ``a_n = [s_n - O_n]_+`` are constants in the gradient (detached, as the paper states), with
    the relaxation ``O_p = 1 + m``, ``O_n = -m``, ``D_p = 1 - m``, ``D_n = m``. Face setting:
    gamma = 256, m = 0.25. ``gamma`` is the scale: a number, ``Scale`` or scale table.
    Equals cross-entropy on logits ``gamma a_p (s_p - D_p)`` (target) and ``gamma a_n (s_n - D_n)``.
    """

    search_space = {"gamma": Dim(16.0, 512.0, log=True), "m": Dim(0.1, 0.5)}

    shown_params = ('gamma', 'm')

    def __init__(self, *, num_classes: int, embedding_dim: int, gamma: float | Scale | dict = 256.0,
                 m: float = 0.25) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=gamma)
        if not 0 <= m < 1:
            raise ValueError(f"m (Circle relaxation margin) must be in [0, 1), got {m!r}")
        self.m = float(m)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings)
        is_target = F.one_hot(labels, self.num_classes).bool()
        alpha = torch.where(is_target, (1 + self.m - cos.detach()).clamp_min(0), (cos.detach() + self.m).clamp_min(0))
        delta = torch.where(is_target, torch.full_like(cos, 1 - self.m), torch.full_like(cos, self.m))
        gamma = self.scale_value(embeddings)
        self.stats = angle_stats(cos, labels)
        self.stats["s"] = gamma.detach()
        return F.cross_entropy(gamma * alpha * (cos - delta), labels)
