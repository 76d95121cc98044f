"""Sub-centre ArcFace: K sub-centres per class, ArcFace on the closest one."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.classifier import CosineClassifier
from mlcompare.losses.margins import additive_angular
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits, replace_target, target_of
from mlcompare.losses.scale import Scale


class SubCenterArcFace(CosineClassifier):
    """ArcFace on ``cos theta_j = max_k cos(x, w_jk)`` with ``K`` sub-centres per class.

    Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-scale Noisy Web Faces",
    ECCV 2020. ``weight [C * K, D]``, row ``j * K + k`` is sub-centre k of class j
    (pytorch-metric-learning's column order). ``s``, ``m`` (radians), ``easy_margin`` as ArcFace.

    Dropping (the paper's sec. 3.2, optional): with ``drop_threshold`` (radians; paper 75 deg =
    1.309) a sample whose angle to its class's dominant sub-centre exceeds the threshold is left
    out of the loss from training fraction ``drop_start`` on. The dominant sub-centre of a class
    is the one that most of its training samples were closest to, counted in the buffer
    ``assignments [C, K]`` since the start. ``outliers()`` is the offline version over a data set.
    Stats add ``dropped_fraction`` when dropping is on.
    """

    search_space = {"s": Dim(8.0, 128.0, log=True), "m": Dim(0.1, 0.8)}

    shown_params = ('s', 'm', 'K')

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float | Scale | dict = 64.0, m: float = 0.5,
                 K: int = 3, easy_margin: bool = False, drop_threshold: float | None = None,
                 drop_start: float = 0.5) -> None:
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"K (sub-centres per class) must be an integer >= 1, got {K!r}")
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, s=s, rows=num_classes * K)
        if not 0 < m < math.pi / 2:
            raise ValueError(f"m (ArcFace angular margin, radians) must be in (0, pi/2), got {m!r}")
        if drop_threshold is not None and not 0 < drop_threshold < math.pi:
            raise ValueError(f"drop_threshold (radians) must be in (0, pi) or None, got {drop_threshold!r}")
        if not 0 <= drop_start <= 1:
            raise ValueError(f"drop_start must be a training fraction in [0, 1], got {drop_start!r}")
        self.K = K
        self.m = float(m)
        self.easy_margin = bool(easy_margin)
        self.drop_threshold = drop_threshold
        self.drop_start = float(drop_start)
        self.progress = 0.0
        self.register_buffer("assignments", torch.zeros(num_classes, K))

    def set_progress(self, step: int, total_steps: int) -> None:
        super().set_progress(step, total_steps)
        self.progress = step / max(total_steps, 1)

    def subcenter_cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, C, K]`` cosines to every sub-centre."""
        return cosine_logits(embeddings, self.weight).view(embeddings.shape[0], self.num_classes, self.K)

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """The angle to a class is the angle to its nearest sub-centre."""
        return self.subcenter_cosines(embeddings).max(dim=2).values

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return additive_angular(cos_target, self.m, easy_margin=self.easy_margin)

    def outliers(self, embeddings: torch.Tensor, labels: torch.Tensor, threshold: float = math.radians(75)
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Offline dropping over a data set: ``(is_outlier [B] bool, dominant [C] int64)``.

        The dominant sub-centre of class j is the one most of j's given samples are closest to
        (0 for a class without samples); an outlier is farther than ``threshold`` radians from it.
        """
        with torch.no_grad():
            sub = self.subcenter_cosines(embeddings)
            own = sub[torch.arange(len(labels), device=labels.device), labels]  # [B, K]
            counts = torch.zeros(self.num_classes, self.K, device=own.device)
            counts.index_put_((labels, own.argmax(1)), torch.ones(len(labels), device=own.device), accumulate=True)
            dominant = counts.argmax(1)
            cos_dominant = own.gather(1, dominant[labels].unsqueeze(1)).squeeze(1)
            return torch.acos(cos_dominant.clamp(-1, 1)) > threshold, dominant

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        sub = self.subcenter_cosines(embeddings)
        cos = sub.max(dim=2).values
        logits = self.scale_value(embeddings) * replace_target(cos, labels, self.margin(target_of(cos, labels)))
        losses = F.cross_entropy(logits, labels, reduction="none")
        self.stats = angle_stats(cos, labels)
        if self.scale is not None:
            self.stats["s"] = self.scale().detach()
        if self.drop_threshold is None:
            return losses.mean()
        with torch.no_grad():
            own = sub.detach()[torch.arange(len(labels), device=labels.device), labels]
            if self.training:
                self.assignments.index_put_((labels, own.argmax(1)), torch.ones_like(labels, dtype=self.assignments.dtype),
                                            accumulate=True)
            cos_dominant = own.gather(1, self.assignments.argmax(1)[labels].unsqueeze(1)).squeeze(1)
            keep = torch.ones_like(losses)
            if self.progress >= self.drop_start:
                keep = (torch.acos(cos_dominant.clamp(-1, 1)) <= self.drop_threshold).to(losses.dtype)
            self.stats["dropped_fraction"] = 1 - keep.mean()
        return (losses * keep).sum() / keep.sum().clamp_min(1)
