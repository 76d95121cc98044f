"""Triplet and pair miners for metric learning: torch + numpy + faiss only.

Each miner is a class configured at construction and called as ``miner(embeddings, labels)``;
it returns int64 index tensors on the input's device, ``(anchor, positive, negative)`` or
``(a1, p, a2, n)``, the tuple forms of pytorch-metric-learning, so its losses accept ours.
Distances are Euclidean on L2-normalised embeddings unless ``normalize=False``.
"""
from __future__ import annotations

import inspect

from miners._validation import NonFiniteEmbeddings
from miners.base import Miner
from miners.batch_all import BatchAllMiner
from miners.batch_hard import BatchHardMiner
from miners.distance_weighted import DistanceWeightedMiner
from miners.memory_bank import MemoryBankMiner
from miners.pair import PairMiner
from miners.random_triplet import RandomTripletMiner
from miners.semihard import SemiHardMiner

# name -> class; filled by the imports above, nothing registers itself.
REGISTRY: dict[str, type] = {
    "batch_hard": BatchHardMiner,
    "semihard": SemiHardMiner,
    "batch_all": BatchAllMiner,
    "pair": PairMiner,
    "random": RandomTripletMiner,
    "distance_weighted": DistanceWeightedMiner,
    "memory_bank": MemoryBankMiner,
}


def get(name: str, **params) -> Miner | MemoryBankMiner:
    """Build the miner called ``name`` with its keyword ``params``; unknown names or parameters raise ``ValueError``."""
    if name not in REGISTRY:
        raise ValueError(f"unknown miner '{name}'; valid miners: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in params:
        if key not in accepted:
            raise ValueError(f"miner '{name}' has no parameter '{key}'; valid parameters: {', '.join(accepted)}")
    return cls(**params)


__all__ = [
    "Miner", "NonFiniteEmbeddings", "REGISTRY", "get", "BatchHardMiner", "SemiHardMiner", "BatchAllMiner", "PairMiner",
    "RandomTripletMiner", "DistanceWeightedMiner", "MemoryBankMiner",
]
