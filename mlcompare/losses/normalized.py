"""Shared steps of the normalised (cosine) classification losses.

insightface's design (``arcface_torch/losses.py``): cosine logits -> margin function on the
target logit -> scale -> cross-entropy. ``cosine_logits`` is the first step,
``replace_target`` splices the margin logit back in, ``angle_stats`` is what every
normalised loss logs, and ``MarginHead`` is the one shared module (class weights, scale
schedule, input checks, the forward pipeline); a subclass only supplies its margin function.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.losses.base import Loss
from mlcompare.losses.scale import Scale, make_scale


def check_sizes(num_classes: int, embedding_dim: int) -> None:
    """One-line ``ValueError`` for a classifier with fewer than 2 classes or no dimensions."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if isinstance(embedding_dim, bool) or not isinstance(embedding_dim, int) or embedding_dim < 1:
        raise ValueError(f"embedding_dim must be an integer >= 1, got {embedding_dim!r}")


def check_batch(embeddings: torch.Tensor, labels: torch.Tensor, embedding_dim: int) -> None:
    """Shape checks without reading values (no host-device synchronisation)."""
    if embeddings.ndim != 2 or embeddings.shape[1] != embedding_dim:
        raise ValueError(f"embeddings must have shape [batch, {embedding_dim}], got {list(embeddings.shape)}")
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(f"labels must have shape [{embeddings.shape[0]}], got {list(labels.shape)}")
    if labels.dtype != torch.int64:
        raise ValueError(f"labels must be int64 class indices, got dtype {labels.dtype}")


def upcast_half(x: torch.Tensor) -> torch.Tensor:
    # margins act on cosines within 1e-3 of +-1; half precision would round them away
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def cosine_logits(embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``cos theta_ij = <x_i/|x_i|, w_j/|w_j|>``, shape ``[B, C]``, at least float32.

    Autocast is turned off here for the same reason as ``upcast_half``. A zero-norm feature or
    weight gives cosine 0 (``F.normalize`` divides by ``max(|x|, 1e-12)``), i.e. theta = pi/2.
    """
    with torch.autocast(device_type=embeddings.device.type, enabled=False):
        x = F.normalize(upcast_half(embeddings), dim=1)
        w = F.normalize(upcast_half(weight).to(x.dtype), dim=1)
        return F.linear(x, w)


def safe_acos(cos: torch.Tensor) -> torch.Tensor:
    """``acos(clamp(cos, -1, 1))`` in value, with a gradient that stays finite at +-1.

    ``d acos / d x = -1 / sqrt(1 - x^2)`` is infinite at +-1. The gradient is taken through
    ``acos(clamp(cos, -1 + eps, 1 - eps))`` (0 at exactly +-1, where the cosine is extremal and
    the true chain rule gives 0 as well), while the value is the exact ``acos``: clamping the value
    would move theta = 0 to 5e-4 rad in float32.
    """
    eps = torch.finfo(cos.dtype).eps
    exact = torch.acos(cos.detach().clamp(-1.0, 1.0))
    safe = torch.acos(cos.clamp(-1.0 + eps, 1.0 - eps))
    return safe + (exact - safe.detach())


def target_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``logits[i, labels[i]]``, shape ``[B]``."""
    return logits.gather(1, labels.unsqueeze(1)).squeeze(1)


def replace_target(logits: torch.Tensor, labels: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Copy of ``logits`` with ``logits[i, labels[i]] = target[i]`` (differentiable in both)."""
    return logits.scatter(1, labels.unsqueeze(1), target.unsqueeze(1).to(logits.dtype))


def angle_stats(cos: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Detached mean target angle ``theta_target`` and mean non-target angle ``theta_other`` (radians)."""
    with torch.no_grad():
        theta = torch.acos(cos.clamp(-1.0, 1.0))
        target = target_of(theta, labels)
        b, c = theta.shape
        other = (theta.sum() - target.sum()) / (b * (c - 1))
        return {"theta_target": target.mean(), "theta_other": other}


class MarginHead(Loss):
    """Normalised classifier with a margin on the target logit, then cross-entropy.

    ``L = CE(s * [cos theta_j for j != y; margin(cos theta_y) for j = y], y)``, mean over the
    batch. ``weight`` is ``[num_classes, embedding_dim]`` (normal, std 0.01, as insightface's
    partial FC). ``s`` is a number, a ``Scale`` or a scale table (see ``scale.py``); ``s=None``
    means the feature norm ``|x_i|`` is the scale (A-Softmax, SphereFace's un-normalised features).
    Subclasses implement ``margin(cos_target) -> target logit before scaling``.
    """

    family = "classification"

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float | Scale | dict | None,
                 weight_rows: int | None = None) -> None:
        super().__init__()
        check_sizes(num_classes, embedding_dim)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(weight_rows or num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = None if s is None else make_scale(s)

    def set_progress(self, step: int, total_steps: int) -> None:
        if self.scale is not None:
            self.scale.set_progress(step, total_steps)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def class_cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` cosines to the class weights (sub-centre ArcFace takes a max here)."""
        return cosine_logits(embeddings, self.weight)

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        return self.class_cosines(embeddings)

    def scale_value(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scalar ``s``, or ``[B, 1]`` feature norms when ``s`` is None."""
        if self.scale is None:
            return upcast_half(embeddings).norm(dim=1, keepdim=True)
        return self.scale()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings)
        logits = replace_target(cos, labels, self.margin(target_of(cos, labels)))
        s = self.scale_value(embeddings)
        self.stats = angle_stats(cos, labels)
        if self.scale is not None:
            self.stats["s"] = s.detach()
        return F.cross_entropy(s * logits, labels)

