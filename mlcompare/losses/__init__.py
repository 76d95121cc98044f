"""Loss registry: a plain dict from name to class, and ``get``.

Every loss is one class in one file, formula and paper in its docstring.
"""
from __future__ import annotations

import inspect
from typing import Any

import miners
from mlcompare.losses.base import Loss

# classification (margin-softmax) losses
from mlcompare.losses.arcface import ArcFace
from mlcompare.losses.center import Center
from mlcompare.losses.circle import Circle
from mlcompare.losses.combined import Combined
from mlcompare.losses.cosface import CosFace
from mlcompare.losses.l2softmax import L2Softmax
from mlcompare.losses.lsoftmax import LSoftmax
from mlcompare.losses.magface import MagFace
from mlcompare.losses.normface import NormFace
from mlcompare.losses.partial_fc import PartialFC
from mlcompare.losses.ring import Ring
from mlcompare.losses.softmax import Softmax
from mlcompare.losses.sphereface import SphereFace
from mlcompare.losses.subcenter_arcface import SubCenterArcFace

# pair losses
from mlcompare.losses.contrastive import ContrastiveLoss
from mlcompare.losses.margin import MarginLoss
from mlcompare.losses.triplet import TripletLoss
from mlcompare.losses.triplet_soft import SoftMarginTripletLoss

# name -> class; kept in one place, filled by explicit imports (nothing registers itself).
REGISTRY: dict[str, type[Loss]] = {
    # classification (margin-softmax) losses
    "softmax": Softmax,
    "cosface": CosFace,
    "arcface": ArcFace,
    "combined": Combined,
    "l2softmax": L2Softmax,
    "normface": NormFace,
    "lsoftmax": LSoftmax,
    "sphereface": SphereFace,
    "subcenter_arcface": SubCenterArcFace,
    "magface": MagFace,
    "circle": Circle,
    "center": Center,
    "ring": Ring,
    "partial_fc": PartialFC,
    # pair losses
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "triplet_soft": SoftMarginTripletLoss,
    "margin": MarginLoss,
}


def get(name: str, *, num_classes: int, embedding_dim: int, miner: Any = None, rank: int = 0, world_size: int = 1,
        **params: Any) -> Loss:
    """Build the loss called ``name``.

    ``num_classes`` and ``embedding_dim`` are passed to every loss (pair losses may use
    ``num_classes``, e.g. a per-class beta); ``params`` are the loss's own, named as in its
    paper. ``miner`` (a miner object, see :func:`build_miner`) goes to pair losses, None meaning
    the loss's default miner. ``rank`` / ``world_size``, the distributed context, go to losses
    declared ``shardable`` and to no other. An unknown name or parameter raises ``ValueError``
    naming the valid ones.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    valid = parameters(name)
    for key in params:
        if key not in valid:
            raise ValueError(f"loss '{name}' has no parameter '{key}'; valid parameters: {', '.join(valid) or 'none'}")
    if cls.family == "pair":
        params["miner"] = miner
    elif miner is not None:
        raise ValueError(f"loss '{name}' is a classification loss and takes no miner")
    if cls.shardable:
        params |= {"rank": rank, "world_size": world_size}
    return cls(num_classes=num_classes, embedding_dim=embedding_dim, **params)


def parameters(name: str) -> list[str]:
    """The parameters a comparison may set for loss ``name`` (its constructor's own keywords, without
    the sizes, the miner and the distributed context, which are not the user's to set)."""
    reserved = {"self", "num_classes", "embedding_dim", "miner", "rank", "world_size"}
    return [p for p in inspect.signature(REGISTRY[name].__init__).parameters if p not in reserved]


def build_miner(name: str, params: dict[str, Any], *, embedding_dim: int) -> Any:
    """The one place where a miner *name* becomes a miner: ``miners.get(name, **params)``, with the
    method's ``embedding_dim`` given to a miner that stores embeddings (the memory bank) unless set."""
    if name not in miners.REGISTRY:
        raise ValueError(f"unknown miner '{name}'; valid miners: {', '.join(sorted(miners.REGISTRY))}")
    params = dict(params)
    if miners.REGISTRY[name].keeps_embeddings:
        params.setdefault("embedding_dim", embedding_dim)
    return miners.get(name, **params)


def family(name: str) -> str:
    """``"classification"`` or ``"pair"`` for a registered loss name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].family


__all__ = ["Loss", "REGISTRY", "get", "family", "parameters", "build_miner"]
