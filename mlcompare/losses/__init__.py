"""Loss registry: a plain dict from name to class, and ``get``.

Every loss is one class in one file, formula and paper in its docstring.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

import miners
from mlcompare.losses.base import Loss
from mlcompare.losses import pml

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
from mlcompare.losses.adaface import AdaFace
from mlcompare.losses.adacos import AdaCos
from mlcompare.losses.curricularface import CurricularFace
from mlcompare.losses.elastic_arcface import ElasticArcFace
from mlcompare.losses.elastic_cosface import ElasticCosFace
from mlcompare.losses.sphereface2 import SphereFace2
from mlcompare.losses.uniface import UniFace
from mlcompare.losses.x2softmax import X2Softmax
from mlcompare.losses.coco import COCO
from mlcompare.losses.uploss import UPLoss
from mlcompare.losses.ccl import CCL
from mlcompare.losses.deepvisage import DeepVisage

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
    "adaface": AdaFace,
    "curricularface": CurricularFace,
    "elasticface_arc": ElasticArcFace,
    "elasticface_cos": ElasticCosFace,
    "adacos": AdaCos,
    "uniface": UniFace,
    "sphereface2": SphereFace2,
    "x2softmax": X2Softmax,
    "coco": COCO,
    "uploss": UPLoss,
    "ccl": CCL,
    "deepvisage": DeepVisage,
    # pair losses
    "contrastive": ContrastiveLoss,
    "triplet": TripletLoss,
    "triplet_soft": SoftMarginTripletLoss,
    "margin": MarginLoss,
}


def get(name: str, *, num_classes: int, embedding_dim: int, miner: Any = None, rank: int = 0, world_size: int = 1,
        family: str = "", class_counts: torch.Tensor | None = None, **params: Any) -> Loss:
    """Build the loss called ``name``.

    ``num_classes`` and ``embedding_dim`` are passed to every loss (pair losses may use
    ``num_classes``, e.g. a per-class beta); ``params`` are the loss's own, named as in its
    paper. ``miner`` (a miner object, see :func:`build_miner`) goes to pair losses, None meaning
    the loss's default miner. ``rank`` / ``world_size``, the distributed context, go to losses
    declared ``shardable`` and to no other. ``class_counts`` (``[num_classes]`` images per class of the
    training set) goes to losses declared ``needs_class_counts`` (which refuse to build without it)
    and to no other. An unknown name or parameter raises ``ValueError`` naming the valid ones.

    ``"pml:ClassName"`` builds that pytorch-metric-learning loss (:class:`pml.PMLLoss`); ``family``
    is needed only for a class not in :data:`pml.KNOWN` (a registered loss declares its own).
    """
    if name.startswith(pml.PREFIX):
        return pml.PMLLoss(name.removeprefix(pml.PREFIX), num_classes=num_classes, embedding_dim=embedding_dim,
                           family=family, miner=miner, **params)
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    cls = REGISTRY[name]
    if family and family != cls.family:
        raise ValueError(f"loss '{name}' is a {cls.family} loss; family is set only for pml: losses")
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
    if cls.needs_class_counts:
        if class_counts is None:
            raise ValueError(f"loss '{name}' needs class_counts, the training set's images per class")
        params["class_counts"] = class_counts
    return cls(num_classes=num_classes, embedding_dim=embedding_dim, **params)


def parameters(name: str) -> list[str]:
    """The parameters a comparison may set for loss ``name`` (its constructor's own keywords, without
    the sizes, the miner, the distributed context and the class counts, which are not the user's to set)."""
    if name.startswith(pml.PREFIX):
        return pml.user_parameters(pml.loss_class(name.removeprefix(pml.PREFIX)))
    reserved = {"self", "num_classes", "embedding_dim", "miner", "rank", "world_size", "class_counts"}
    return [p for p in inspect.signature(REGISTRY[name].__init__).parameters if p not in reserved]


def build_miner(name: str, params: dict[str, Any], *, embedding_dim: int) -> Any:
    """The one place where a miner *name* becomes a miner: ``miners.get(name, **params)``, with the
    method's ``embedding_dim`` given to a miner that stores embeddings (the memory bank) unless set.
    ``"pml:ClassName"`` builds that pytorch-metric-learning miner (:class:`pml.PMLMiner`)."""
    if name.startswith(pml.PREFIX):
        return pml.PMLMiner(name.removeprefix(pml.PREFIX), **params)
    if name not in miners.REGISTRY:
        raise ValueError(f"unknown miner '{name}'; valid miners: {', '.join(sorted(miners.REGISTRY))}")
    params = dict(params)
    if miners.REGISTRY[name].keeps_embeddings:
        params.setdefault("embedding_dim", embedding_dim)
    return miners.get(name, **params)


def family(name: str, given: str = "") -> str:
    """``"classification"`` or ``"pair"`` for a registered loss name; for ``"pml:ClassName"`` also
    ``"proxy"``, from :data:`pml.KNOWN` or ``given`` (a method's ``family``) for a class not in it."""
    if name.startswith(pml.PREFIX):
        return pml.resolve_family(name.removeprefix(pml.PREFIX), given)
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name].family


__all__ = ["Loss", "REGISTRY", "get", "family", "parameters", "build_miner"]
