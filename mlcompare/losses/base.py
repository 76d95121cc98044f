"""What every loss in mlcompare is: a module called as ``loss(embeddings, labels)``."""
from __future__ import annotations

import torch
from torch import nn


class Loss(nn.Module):
    """Base of all losses.

    ``forward(embeddings [B, D] float, labels [B] int64) -> scalar tensor``.

    ``family`` is ``"classification"`` (owns ``.weight``, ``[num_classes, embedding_dim]``,
    optimised with the backbone) or ``"pair"`` (takes a miner from the ``miners`` package).

    After each forward, ``stats`` holds detached scalar tensors that the trainer logs to
    ``history.csv`` (for example ``active_fraction``, ``theta_target``); tensors, not floats,
    so that logging forces no host-device synchronisation on steps that do not log.
    """

    family: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, torch.Tensor] = {}

    def set_progress(self, step: int, total_steps: int) -> None:
        """Called by the trainer before each step; schedules (annealing, scale) override it."""
