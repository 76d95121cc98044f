"""The margin contract: a margin is one object that turns a classifier's cosines into scaled logits.

insightface's design (``arcface_torch/losses.py`` ``CombinedMarginLoss``, which ``partial_fc_v2.py``
takes as an argument): cosine logits -> margin on the logits -> scale -> cross-entropy. Every margin
(ArcFace, CosFace, combined, SphereFace, NormFace, AdaFace, MagFace, CurricularFace, ElasticFace,
X2-Softmax) is a :class:`MarginLogits` registered by name in ``mlcompare.losses.REGISTRY``; the registry
builds it and hands it to :class:`~mlcompare.losses.margin_softmax.MarginSoftmax` (the loss of that
name) or to :class:`~mlcompare.losses.partial_fc.PartialFC`. A new margin is one file with one such
class plus one registry line, and Partial FC takes it too.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mlcompare.config.search_space import Dim
from mlcompare.losses.normalized import SumRanks, one_rank, replace_target, target_of
from mlcompare.losses.scale import Scale, make_scale, scale_value


class MarginLogits(nn.Module):
    """A margin: ``forward(cos [N, S], labels [N], embeddings [N, D], sum_ranks) -> s * logits [N, S]``.

    The constructor's keywords are the margin softmax's parameters as a comparison sets them, with
    their defaults and one-line checks, ``s`` among them (a number, a ``Scale``, a scale table, or
    None for the feature norm ``|x_i|``). A subclass implements :meth:`logits` (before the scale);
    the columns of ``cos`` are the classes the caller holds: all of them (``MarginSoftmax``) or one
    rank's sampled shard (``PartialFC``). ``labels[i]`` is the column of row i's class, or -1 where
    another rank holds it (the row's S logits are then all non-target ones). ``embeddings`` are the
    raw features of the whole batch (margins read from the norm). ``sum_ranks(x)`` sums ``x`` over
    the ranks that hold the other columns (:func:`one_rank` on one process): whatever a running
    statistic needs across classes goes through it, so that it is the same on every rank.

    Declared for the registry (class attributes): ``family`` (always ``"classification"``),
    ``needs_class_counts`` (False), ``shown_params`` and ``search_space`` of the loss of that name
    (as :class:`~mlcompare.losses.base.Loss` declares them), and ``shard_refusal``: empty when Partial
    FC may shard the margin, else why not (refused with that reason).

    Running statistics are buffers of this module; state that is not a tensor (a generator) is
    returned by :meth:`margin_state` and kept in the owning loss's extra state. After each forward,
    ``stats`` holds this step's detached scalars: ``s`` (with a scale), then the margin's own.
    """

    family: ClassVar[str] = "classification"
    needs_class_counts: ClassVar[bool] = False
    shown_params: ClassVar[tuple[str, ...]] = ()
    search_space: ClassVar[dict[str, Dim]] = {}
    shard_refusal: ClassVar[str] = ""

    def __init__(self, *, s: float | Scale | dict | None) -> None:
        super().__init__()
        self.scale = None if s is None else make_scale(s)
        self.stats: dict[str, torch.Tensor] = {}

    def set_progress(self, step: int, total_steps: int) -> None:
        """Called before each step by the owning loss: the scale's schedule (a margin's own overrides add theirs)."""
        if self.scale is not None:
            self.scale.set_progress(step, total_steps)

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:  # pragma: no cover - abstract
        """``[N, S]`` logits before the scale; may set ``self.stats`` to the margin's own statistics."""
        raise NotImplementedError

    def forward(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
                sum_ranks: SumRanks = one_rank) -> torch.Tensor:
        self.stats = {}
        logits = self.logits(cos, labels, embeddings, sum_ranks)
        s = scale_value(self.scale, embeddings)
        if self.scale is not None:
            self.stats = {"s": s.detach()} | self.stats
        return s * logits

    def penalty(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """A per-sample regulariser's batch mean added to the cross-entropy (MagFace's ``g``), or None."""
        return None

    def margin_state(self) -> dict[str, Any]:
        return {}

    def load_margin_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`margin_state` returned (absent keys: keep the current state)."""


class TargetMargin(MarginLogits):
    """Only the target logit changes: ``margin(cos theta_y)`` in place of ``cos theta_y``, the others stay."""

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """``[B]`` target cosines -> target logits before scaling."""
        raise NotImplementedError

    def logits(self, cos: torch.Tensor, labels: torch.Tensor, embeddings: torch.Tensor,
               sum_ranks: SumRanks) -> torch.Tensor:
        held = labels >= 0
        safe = labels.clamp(min=0)
        target = target_of(cos, safe)
        # rows whose class lives on another rank keep their cosine (the where passes it through)
        return replace_target(cos, safe, torch.where(held, self.margin(target), target))
