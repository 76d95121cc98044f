"""Shared steps of the normalised (cosine) classification losses.

insightface's design (``arcface_torch/losses.py``): cosine logits -> margin function on the
target logit -> scale -> cross-entropy. ``cosine_logits`` is the first step,
``replace_target`` splices the margin logit back in, ``angle_stats`` is what every
normalised loss logs, ``MarginLogits`` is a loss's cosines-to-logits step on its own (what a
sharded classifier, ``partial_fc``, shares with the loss), and ``MarginHead`` is the one shared
module (class weights, scale schedule, input checks, the forward pipeline); a subclass supplies its
margin function or its ``MarginLogits``.
"""
from __future__ import annotations

from typing import Any, Callable

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


SumRanks = Callable[[torch.Tensor], torch.Tensor]


def one_rank(x: torch.Tensor) -> torch.Tensor:
    """The ``sum_ranks`` of a classifier that holds every class: nothing to add."""
    return x


def target_cosines(cos: torch.Tensor, labels: torch.Tensor, sum_ranks: SumRanks = one_rank) -> torch.Tensor:
    """Detached ``cos theta_{i, y_i}`` for every row ``[N]``, also where another rank holds the class.

    ``labels`` index the columns of ``cos`` or are -1; each row's target lives on exactly one rank,
    so the sum over ranks of (target where held, else 0) is the target on every rank.
    """
    with torch.no_grad():
        held = target_of(cos, labels.clamp(min=0))
        return sum_ranks(torch.where(labels >= 0, held, torch.zeros_like(held)))


class MarginLogits(nn.Module):
    """A margin loss's step from cosines to logits, apart from its class weights.

    ``forward(cos [N, S], labels [N], embeddings [N, D], sum_ranks) -> logits [N, S]``, before the
    scale. The columns are the classes the caller holds: all of them (``MarginHead``) or one rank's
    sampled shard (``PartialFC``). ``labels[i]`` is the column of row i's class, or -1 where another
    rank holds it (the row's S logits are then all non-target ones). ``embeddings`` are the raw
    features of the whole batch (margins read from the norm). ``sum_ranks(x)`` sums ``x`` over the
    ranks that hold the other columns (:func:`one_rank` on one process): whatever a running
    statistic needs across classes goes through it, so that it is the same on every rank.
    Running statistics are buffers of this module; state that is not a tensor (a generator) is
    returned by :meth:`margin_state` and kept in the owning loss's extra state. After each forward,
    ``stats`` holds this step's extra detached scalars.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, torch.Tensor] = {}

    def forward(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
                sum_ranks: SumRanks = one_rank) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def penalty(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """A per-sample regulariser's batch mean added to the cross-entropy (MagFace's ``g``), or None."""
        return None

    def margin_state(self) -> dict[str, Any]:
        return {}

    def load_margin_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`margin_state` returned (absent keys: keep the current state)."""


class TargetMargin(MarginLogits):
    """Only the target logit changes: ``margin(cos theta_y)`` in place of ``cos theta_y``, the others stay."""

    def __init__(self, margin: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        super().__init__()
        self.margin_fn = margin

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        """``[B]`` target cosines -> target logits before scaling (a subclass may override)."""
        return self.margin_fn(cos_target)

    def forward(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
                sum_ranks: SumRanks = one_rank) -> torch.Tensor:
        held = labels >= 0
        safe = labels.clamp(min=0)
        target = target_of(cos, safe)
        # rows whose class lives on another rank keep their cosine (the where passes it through)
        return replace_target(cos, safe, torch.where(held, self.margin(target), target))


class MarginHead(Loss):
    """Normalised classifier with a margin on the logits, then cross-entropy.

    ``L = CE(s * [cos theta_j for j != y; margin(cos theta_y) for j = y], y)``, mean over the
    batch. ``weight`` is ``[num_classes, embedding_dim]`` (normal, std 0.01, as insightface's
    partial FC). ``s`` is a number, a ``Scale`` or a scale table (see ``scale.py``); ``s=None``
    means the feature norm ``|x_i|`` is the scale (A-Softmax, SphereFace's un-normalised features).
    Subclasses implement ``margin(cos_target) -> target logit before scaling``, or pass
    ``margin_logits`` (a :class:`MarginLogits`: a margin that reads more than the target cosine,
    running statistics), whose ``penalty`` is added to the cross-entropy and whose ``stats`` join
    the loss's.
    """

    family = "classification"

    def __init__(self, *, num_classes: int, embedding_dim: int, s: float | Scale | dict | None,
                 weight_rows: int | None = None, margin_logits: MarginLogits | None = None) -> None:
        super().__init__()
        check_sizes(num_classes, embedding_dim)
        self.num_classes = num_classes
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.empty(weight_rows or num_classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)
        self.scale = None if s is None else make_scale(s)
        self.margin_logits = margin_logits if margin_logits is not None else TargetMargin(self.margin)
        self.register_load_state_dict_pre_hook(_margin_buffers_at_top_level)

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
        logits = self.margin_logits(cos, labels, embeddings)
        s = self.scale_value(embeddings)
        self.stats = angle_stats(cos, labels)
        if self.scale is not None:
            self.stats["s"] = s.detach()
        self.stats.update(self.margin_logits.stats)
        loss = F.cross_entropy(s * logits, labels)
        penalty = self.margin_logits.penalty(embeddings)
        return loss if penalty is None else loss + penalty

    def get_extra_state(self) -> dict[str, Any]:
        # the margin's own state (ElasticFace's generator) is the loss's, where a checkpoint has always held it
        return super().get_extra_state() | self.margin_logits.margin_state()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.margin_logits.load_margin_state(state)


def _margin_buffers_at_top_level(module: MarginHead, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    # Checkpoints written before MarginLogits held a margin's running statistics as the loss's own
    # buffers ("batch_mean", not "margin_logits.batch_mean"): --resume must still read them.
    for name, _ in module.margin_logits.named_buffers():
        old, new = prefix + name, f"{prefix}margin_logits.{name}"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old)
