"""UP loss: softmax plus a term lifting the weight norms of under-represented classes."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mlcompare.config.search_space import Dim
from mlcompare.losses.normalized import angle_stats, check_batch, cosine_logits, upcast_half
from mlcompare.losses.softmax import Softmax


class UPLoss(Softmax):
    """``L = CE(x W^T, y) + lambda_up * mean_{k in R} (|w_k|^2 - a)^2``, ``a = mean_{i in N} |w_i|^2``.

    Guo & Zhang, "One-shot Face Recognition by Promoting Underrepresented Classes", 2017
    (arXiv:1707.05574): the underrepresented-classes promotion (UP) term. A softmax classifier trained on
    imbalanced data gives its rare classes small weight norms ``|w_k|``, hence small logits and poor
    recall; the term pulls each rare class's squared norm toward the mean squared norm ``a`` of the
    normal classes. ``R`` are the classes with at most ``rare_max`` training images, ``N`` the
    others; ``a`` is a function of the weights (gradient flows into ``N`` too, as the paper's
    formula is written, though each normal class gets only ``1/|N|`` of it).

    ``class_counts`` (``[num_classes]``, images per class) is the training set's, filled by the
    runner (this loss declares ``needs_class_counts``). ``rare_max`` generalises the paper's split:
    there ``R`` is the one-shot set (one image per person, MS-Celeb-1M low-shot) and ``N`` the base
    set; mlcompare drops single-image identities, so the default ``rare_max=2`` is the nearest
    analogue. Where ``R`` or ``N`` is empty the term is 0 (plain softmax); ``rare_classes`` in the
    stats says how many classes it covers. Valid: ``lambda_up >= 0``, integer ``rare_max >= 1``.

    Differences from the paper, which we accept: the paper trains this classifier (MLR) on fixed
    features from a separately trained face model; here it is a training loss for the backbone, as
    every classification loss in mlcompare. No bias (``Softmax``'s default, angular boundaries).
    The paper's lambda is not reproduced; ``lambda_up=0.01`` is our default. No official code.

    Stats: ``theta_target`` / ``theta_other`` (radians), ``up_term`` (the unweighted UP term),
    ``rare_classes``.
    """

    needs_class_counts = True
    shown_params = ("lambda_up", "rare_max")
    search_space = {"lambda_up": Dim(1e-4, 1.0, log=True)}

    def __init__(self, *, num_classes: int, embedding_dim: int, class_counts: Sequence[int] | torch.Tensor,
                 lambda_up: float = 0.01, rare_max: int = 2) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim)
        if isinstance(lambda_up, bool) or not isinstance(lambda_up, (int, float)) or not 0 <= lambda_up < float("inf"):
            raise ValueError(f"lambda_up (UP term weight) must be a number in [0, inf), got {lambda_up!r}")
        if isinstance(rare_max, bool) or not isinstance(rare_max, int) or rare_max < 1:
            raise ValueError(f"rare_max (most images of a rare class) must be an integer >= 1, got {rare_max!r}")
        # read as Python ints so that building on the meta device (the runner's pre-flight check) works
        counts = class_counts.tolist() if isinstance(class_counts, torch.Tensor) else list(class_counts)
        if len(counts) != num_classes or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in counts):
            raise ValueError(f"class_counts must be {num_classes} non-negative integers (images per class), "
                             f"got {len(counts)} values")
        self.lambda_up = float(lambda_up)
        self.rare_max = rare_max
        # derived from constructor arguments, not learned: rebuilt on resume, so not saved
        self.register_buffer("rare", torch.tensor([c <= rare_max for c in counts]), persistent=False)

    def up_term(self) -> torch.Tensor:
        """``mean_{k in R} (|w_k|^2 - mean_{i in N} |w_i|^2)^2``; 0 where ``R`` or ``N`` is empty."""
        norm2 = upcast_half(self.weight).pow(2).sum(dim=1)
        rare = self.rare.to(norm2.dtype)
        normal = 1.0 - rare
        # clamped counts keep an empty group at 0 instead of 0/0; sums, not boolean indexing, avoid a sync
        target = (norm2 * normal).sum() / normal.sum().clamp(min=1.0)
        return ((norm2 - target).pow(2) * rare).sum() / rare.sum().clamp(min=1.0) * (normal.sum() > 0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        up = self.up_term()
        self.stats = angle_stats(cosine_logits(embeddings.detach(), self.weight.detach()), labels) | {
            "up_term": up.detach(), "rare_classes": self.rare.sum().detach()}
        return F.cross_entropy(self.logits(embeddings), labels) + self.lambda_up * up
