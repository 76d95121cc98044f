"""What a miner is: a configured object called as ``miner(embeddings, labels)`` returning index tensors."""
from __future__ import annotations

import torch

from miners._validation import check_embeddings_and_labels


class Miner:
    """Base of the in-batch miners.

    ``miner(embeddings [B, D] float, labels [B] int) -> tuple of int64 index tensors`` on the
    input's device: ``(anchor, positive, negative)`` for triplet miners, ``(a1, p, a2, n)`` for
    pair miners, the tuple forms of pytorch-metric-learning. Mining runs under
    ``torch.no_grad()``: only indices come out; losses recompute distances with gradient.
    A batch with nothing to mine gives empty tensors.
    """

    def __init__(self, *, normalize: bool = True) -> None:
        self.normalize = bool(normalize)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        check_embeddings_and_labels(embeddings, labels)
        with torch.no_grad():
            return self.mine(embeddings.detach(), labels)

    def mine(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"
