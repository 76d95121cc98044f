"""Loss registry: a plain dict from name to class, and ``get``.

Every loss is one class in one file, formula and paper in its docstring.
"""
from __future__ import annotations

import inspect

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


def get(name: str, *, num_classes: int, embedding_dim: int, **params) -> Loss:
    """Build the loss called ``name``.

    ``num_classes`` and ``embedding_dim`` are passed to every loss (pair losses may use
    ``num_classes``, e.g. a per-class beta); ``params`` are the loss's own, named as in its
    paper (and ``miner=`` for pair losses). An unknown name or parameter raises ``ValueError``
    naming the valid ones.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    accepted = inspect.signature(cls.__init__).parameters
    for key in params:
        if key not in accepted:
            valid = [p for p in accepted if p not in ("self", "num_classes", "embedding_dim")]
            raise ValueError(f"loss '{name}' has no parameter '{key}'; valid parameters: {', '.join(valid)}")
    return cls(num_classes=num_classes, embedding_dim=embedding_dim, **params)


def family(name: str) -> str:
    """``"classification"`` or ``"pair"`` for a registered loss name."""
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].family


__all__ = ["Loss", "REGISTRY", "get", "family"]
