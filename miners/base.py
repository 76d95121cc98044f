"""What a miner is: a configured object called as ``miner(embeddings, labels)`` returning index tensors."""
from __future__ import annotations

from typing import Any

import torch

from miners._validation import check_embeddings_and_labels


class Miner:
    """Base of the in-batch miners.

    ``miner(embeddings [B, D] float, labels [B] int) -> tuple of int64 index tensors`` on the
    input's device: ``(anchor, positive, negative)`` for triplet miners, ``(a1, p, a2, n)`` for
    pair miners, the tuple forms of pytorch-metric-learning. Mining runs under
    ``torch.no_grad()``: only indices come out; losses recompute distances with gradient.
    A batch with nothing to mine gives empty tensors.

    A seeded miner draws from a private ``torch.Generator`` (``_generator``, made on first use on
    the embeddings' device); :meth:`state_dict` / :meth:`load_state_dict` carry its state, so that a
    resumed training run draws what an uninterrupted one would have.
    """

    keeps_embeddings = False  # True for a miner that stores embeddings and must be told their size
    # Parameters a comparison's report always names (at their defaults when a file leaves them out).
    shown_params: tuple[str, ...] = ()

    def __init__(self, *, normalize: bool = True) -> None:
        self.normalize = bool(normalize)
        self._generator: torch.Generator | None = None

    def state_dict(self) -> dict[str, Any]:
        """Tensors and numbers only (loadable with ``torch.load(weights_only=True)``)."""
        if self._generator is None:
            return {}
        return {"generator": self._generator.get_state(), "generator_device": str(self._generator.device)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self._generator = torch.Generator(device=state["generator_device"])
            self._generator.set_state(state["generator"].cpu())

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        check_embeddings_and_labels(embeddings, labels)
        with torch.no_grad():
            return self.mine(embeddings.detach(), labels)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
