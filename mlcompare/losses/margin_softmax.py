"""The margin softmax: class weights, a margin (a :class:`MarginLogits`), then cross-entropy."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from mlcompare.losses.classifier import Classifier
from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.normalized import angle_stats, check_batch


class MarginSoftmax(Classifier):
    """``L = CE(margin(cos theta, y), y) + penalty``, mean over the batch.

    ``cos theta`` ``[B, C]`` are the cosines between the features and the class weights ``weight``
    ``[C, D]`` (normal, std 0.01, as insightface's partial FC); ``margin`` is the margin-logits
    object (its formula, parameters and paper are in its docstring; the registry builds it by
    name), whose scaled logits go to cross-entropy and whose ``penalty`` (MagFace's ``g``), if any,
    is added. Stats: ``theta_target`` / ``theta_other`` (radians), then the margin's.
    """

    def __init__(self, *, num_classes: int, embedding_dim: int, margin: MarginLogits, rows: int | None = None) -> None:
        super().__init__(num_classes=num_classes, embedding_dim=embedding_dim, init="normal", rows=rows)
        self.margin_logits = margin
        self.register_load_state_dict_pre_hook(_margin_state_at_top_level)

    def set_progress(self, step: int, total_steps: int) -> None:
        self.margin_logits.set_progress(step, total_steps)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_batch(embeddings, labels, self.embedding_dim)
        cos = self.class_cosines(embeddings)
        logits = self.margin_logits(cos, labels, embeddings)
        self.stats = angle_stats(cos, labels) | self.margin_logits.stats
        loss = F.cross_entropy(logits, labels)
        penalty = self.margin_logits.penalty(embeddings)
        return loss if penalty is None else loss + penalty

    def get_extra_state(self) -> dict[str, Any]:
        # the margin's own state (ElasticFace's generator) is the loss's, where a checkpoint has always held it
        return super().get_extra_state() | self.margin_logits.margin_state()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self.margin_logits.load_margin_state(state)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, embedding_dim={self.embedding_dim}"


def _margin_state_at_top_level(module: MarginSoftmax, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    # Checkpoints written before the margin was its own object held its running statistics and its
    # scale as the loss's own ("batch_mean", "scale.log_s", not "margin_logits.batch_mean"): --resume
    # must still read them.
    for name in module.margin_logits.state_dict():
        old, new = prefix + name, f"{prefix}margin_logits.{name}"
        if old in state_dict and new not in state_dict:
            state_dict[new] = state_dict.pop(old)
