"""What every loss in mlcompare is: a module called as ``loss(embeddings, labels)``, and what the
runner and trainer may ask of it. Everything they ask is declared here, with its default, so that a
new loss is one file plus one registry line and a reader sees the whole interface in one place."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from mlcompare.config.search_space import Dim

FAMILIES = ("classification", "pair")


class Loss(nn.Module):
    """Base of all losses.

    ``forward(embeddings [B, D] float, labels [B] int64) -> scalar tensor``.

    Declared interface (class attributes and methods with defaults):

    - ``family``: ``"classification"`` (owns class weights, optimised with the backbone) or
      ``"pair"`` (takes a miner object from the ``miners`` package as ``miner=``).
    - ``shardable``: its constructor takes ``rank`` and ``world_size`` and holds only that rank's
      share of its parameters (Partial FC). The registry passes the distributed context to such a
      loss and to no other.
    - ``sharded``: this instance's parameters differ per rank (``shardable`` and ``world_size > 1``):
      the trainer must not average their gradients over ranks, and checkpoints keep every shard.
    - ``takes_margin``: its constructor takes ``margin``, a margin-logits object (Partial FC). The
      registry builds it from the margin named by the method's ``margin`` parameter (default
      ``default_margin``), with the method's other parameters that are the margin's, ``s`` defaulting
      to ``default_s``; see :func:`mlcompare.losses.build_margin`.
    - ``needs_class_counts``: its constructor takes ``class_counts`` (``[num_classes]`` int64, the
      training set's images per class, as the loss will see them: after a method's identity subset
      and label noise). The runner fills it from the training labels (``runner.class_counts``) and
      the registry passes it to such a loss and to no other.
    - ``miner``: the miner a pair loss calls (None for classification losses). Its state (a memory
      bank's contents) is saved with the loss's ``state_dict`` (``get_extra_state``), so that
      ``--resume`` continues a stateful miner exactly.
    - :meth:`angle_cosines`: ``[N, num_classes]`` cosines between embeddings and class centres for the
      report's angle histograms, or None where a loss has no class centres.
    - :meth:`head_parameters`: the loss's own trainable parameters (class weights, proxies, a
      learnable scale), which the trainer optimises as a group of their own.
    - :meth:`set_progress`: called before each step, for schedules (margin annealing, scale warm-up).
    - ``shard_refusal``: for a cosine classifier that is not one margin on a softmax (AdaCos,
      UniFace, SphereFace2), why Partial FC cannot take it as its margin; Partial FC refuses it with
      this reason (a margin, :class:`~mlcompare.losses.margin_logits.MarginLogits`, declares the same).
    - ``search_space``: ``{parameter: Dim}``, the ranges ``mlcompare tune`` searches by default
      (a comparison's ``[methods.search]`` narrows, widens, fixes or adds; see ``mlcompare/config/search_space.py``).
    - ``shown_params``: the parameters that a run's config and report always name (a margin, a
      scale), at the constructor's default when a comparison file leaves them out, so that files
      state only what differs from a default while reports still say what ran.

    After each forward, ``stats`` holds detached scalar tensors that the trainer logs to
    ``history.csv`` (for example ``active_fraction``, ``theta_target``); tensors, not floats,
    so that logging forces no host-device synchronisation on steps that do not log.
    """

    family: ClassVar[str] = ""
    shardable: ClassVar[bool] = False
    needs_class_counts: ClassVar[bool] = False
    shard_refusal: ClassVar[str] = ""
    takes_margin: ClassVar[bool] = False
    default_margin: ClassVar[str] = ""
    default_s: ClassVar[float] = 64.0
    shown_params: ClassVar[tuple[str, ...]] = ()
    search_space: ClassVar[dict[str, Dim]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, torch.Tensor] = {}
        self.miner: Any = None
        self.sharded: bool = False

    def set_progress(self, step: int, total_steps: int) -> None:
        """Called by the trainer before each step; schedules (annealing, scale) override it."""

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        """``[N, num_classes]`` cosines to each class centre, for the angle figures; None: no centres."""
        return None

    def head_parameters(self) -> list[nn.Parameter]:
        """The loss's own trainable parameters (empty for most pair losses)."""
        return [p for p in self.parameters() if p.requires_grad]

    def get_extra_state(self) -> dict[str, Any]:
        # nn.Module stores this under "_extra_state" in state_dict(): the miner is not a module.
        return {"miner": self.miner.state_dict()} if self.miner is not None else {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.miner is not None and state.get("miner") is not None:
            self.miner.load_state_dict(state["miner"])
