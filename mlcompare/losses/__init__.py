"""Loss registry: a plain dict from name to class, and ``get``.

Every loss is one class in one file, formula and paper in its docstring. A margin (ArcFace, CosFace,
AdaFace, ...) is one :class:`MarginLogits` class: its registry name builds :class:`MarginSoftmax`
with it, and Partial FC takes the same margins by name.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch

import miners
from mlcompare.losses import pml
from mlcompare.losses.base import Loss
from mlcompare.losses.margin_logits import MarginLogits
from mlcompare.losses.margin_softmax import MarginSoftmax
from mlcompare.losses.parameters import check_known, keywords

# classification (margin-softmax) losses
from mlcompare.losses.adacos import AdaCos
from mlcompare.losses.adaface import AdaFace
from mlcompare.losses.arcface import ArcFace
from mlcompare.losses.ccl import CCL
from mlcompare.losses.center import Center
from mlcompare.losses.circle import Circle
from mlcompare.losses.coco import COCO
from mlcompare.losses.combined import Combined
from mlcompare.losses.cosface import CosFace
from mlcompare.losses.curricularface import CurricularFace
from mlcompare.losses.deepvisage import DeepVisage
from mlcompare.losses.elastic_arcface import ElasticArcFace
from mlcompare.losses.elastic_cosface import ElasticCosFace
from mlcompare.losses.l2softmax import L2Softmax
from mlcompare.losses.lsoftmax import LSoftmax
from mlcompare.losses.magface import MagFace
from mlcompare.losses.normface import NormFace
from mlcompare.losses.partial_fc import PartialFC
from mlcompare.losses.ring import Ring
from mlcompare.losses.softmax import Softmax
from mlcompare.losses.sphereface import SphereFace
from mlcompare.losses.sphereface2 import SphereFace2
from mlcompare.losses.subcenter_arcface import SubCenterArcFace
from mlcompare.losses.uniface import UniFace
from mlcompare.losses.uploss import UPLoss
from mlcompare.losses.x2softmax import X2Softmax

# pair losses
from mlcompare.losses.contrastive import ContrastiveLoss
from mlcompare.losses.margin import MarginLoss
from mlcompare.losses.triplet import TripletLoss
from mlcompare.losses.triplet_soft import SoftMarginTripletLoss

# name -> class; kept in one place, filled by explicit imports (nothing registers itself). A margin
# (a MarginLogits class) builds the MarginSoftmax loss of its name, and Partial FC takes it as its
# margin: adding a margin is its file and one line here.
REGISTRY: dict[str, type[Loss] | type[MarginLogits]] = {
    # margins (the margin softmax losses), in the order Partial FC lists them
    "arcface": ArcFace,
    "cosface": CosFace,
    "combined": Combined,
    "adaface": AdaFace,
    "curricularface": CurricularFace,
    "elasticface_arc": ElasticArcFace,
    "elasticface_cos": ElasticCosFace,
    "magface": MagFace,
    "x2softmax": X2Softmax,
    "normface": NormFace,
    "sphereface": SphereFace,
    # other classification losses
    "softmax": Softmax,
    "l2softmax": L2Softmax,
    "lsoftmax": LSoftmax,
    "subcenter_arcface": SubCenterArcFace,
    "circle": Circle,
    "center": Center,
    "ring": Ring,
    "partial_fc": PartialFC,
    "adacos": AdaCos,
    "uniface": UniFace,
    "sphereface2": SphereFace2,
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
# constructor keywords that are not the user's to set: the sizes, the miner, the distributed context, the class counts
RESERVED = ("num_classes", "embedding_dim", "miner", "rank", "world_size", "class_counts")


def is_margin(entry: object) -> bool:
    """Whether a registry entry is a margin (builds a :class:`MarginSoftmax`; Partial FC takes it)."""
    return isinstance(entry, type) and issubclass(entry, MarginLogits)


def margins() -> list[str]:
    """The registered margins that Partial FC can shard, in registry order."""
    return [name for name, entry in REGISTRY.items() if is_margin(entry) and not entry.shard_refusal]


def _entry(name: str) -> type[Loss] | type[MarginLogits]:
    if name not in REGISTRY:
        raise ValueError(f"unknown loss '{name}'; valid losses: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def get(name: str, *, num_classes: int, embedding_dim: int, miner: Any = None, rank: int = 0, world_size: int = 1,
        family: str = "", class_counts: torch.Tensor | None = None, **params: Any) -> Loss:
    """Build the loss called ``name``.

    ``num_classes`` and ``embedding_dim`` are passed to every loss (pair losses may use
    ``num_classes``, e.g. a per-class beta); ``params`` are the loss's own, named as in its
    paper. A margin's name builds :class:`MarginSoftmax` with that margin built from ``params``; a
    loss declared ``takes_margin`` (Partial FC) gets the margin named by ``params["margin"]``
    (:func:`build_margin`). ``miner`` (a miner object, see :func:`build_miner`) goes to pair losses,
    None meaning the loss's default miner. ``rank`` / ``world_size``, the distributed context, go to
    losses declared ``shardable`` and to no other. ``class_counts`` (``[num_classes]`` images per class
    of the training set) goes to losses declared ``needs_class_counts`` (which refuse to build without
    it) and to no other. An unknown name or parameter raises ``ValueError`` naming the valid ones.

    ``"pml:ClassName"`` builds that pytorch-metric-learning loss (:class:`pml.PMLLoss`); ``family``
    is needed only for a class not in :data:`pml.KNOWN` (a registered loss declares its own).
    """
    if name.startswith(pml.PREFIX):
        return pml.PMLLoss(name.removeprefix(pml.PREFIX), num_classes=num_classes, embedding_dim=embedding_dim,
                           family=family, miner=miner, **params)
    cls = _entry(name)
    if family and family != cls.family:
        raise ValueError(f"loss '{name}' is a {cls.family} loss; family is set only for pml: losses")
    check_known(f"loss '{name}'", params, parameters(name))
    if cls.family == "pair":
        params["miner"] = miner
    elif miner is not None:
        raise ValueError(f"loss '{name}' is a classification loss and takes no miner")
    if is_margin(cls):
        return MarginSoftmax(num_classes=num_classes, embedding_dim=embedding_dim, margin=cls(**params))
    if cls.takes_margin:
        own = keywords(cls, RESERVED)
        margin = params.pop("margin", cls.default_margin)
        params = {k: v for k, v in params.items() if k in own} | {"margin": build_margin(
            margin, {k: v for k, v in params.items() if k not in own}, s=cls.default_s, owner=name)}
    if cls.shardable:
        params |= {"rank": rank, "world_size": world_size}
    if cls.needs_class_counts:
        if class_counts is None:
            raise ValueError(f"loss '{name}' needs class_counts, the training set's images per class")
        params["class_counts"] = class_counts
    return cls(num_classes=num_classes, embedding_dim=embedding_dim, **params)


def build_margin(name: str, params: dict[str, Any], *, s: float, owner: str = "partial_fc") -> MarginLogits:
    """The margin called ``name`` with its ``params`` (``s`` defaulting to ``s``), for loss ``owner``
    that takes a margin: a one-line ``ValueError`` for a name that is no margin (with the reason where
    the loss of that name declares one), a margin that cannot be sharded, or a parameter of another margin."""
    entry = REGISTRY.get(name) if isinstance(name, str) else None
    if entry is None or not is_margin(entry) or entry.shard_refusal:
        if entry is not None and entry.shard_refusal:
            raise ValueError(f"{owner} cannot shard margin='{name}': {entry.shard_refusal}")
        raise ValueError(f"margin must be one of {', '.join(margins())}, got {name!r}")
    own = [p for p in keywords(entry) if p != "s"]
    for key in params:
        if key not in own and key != "s":
            raise ValueError(f"{key} is not a parameter of margin='{name}'; it takes {', '.join(own)} (and s)")
    return entry(**({"s": s} | params))


def parameters(name: str) -> list[str]:
    """The parameters a comparison may set for loss ``name``: its constructor's own keywords (a
    margin's: those of its margin), without the sizes, the miner, the distributed context and the
    class counts, which are not the user's to set. A loss that takes a margin also takes every
    shardable margin's (each checked against the margin a method names, when built)."""
    if name.startswith(pml.PREFIX):
        return pml.user_parameters(pml.loss_class(name.removeprefix(pml.PREFIX)))
    cls = _entry(name)
    if is_margin(cls):
        return keywords(cls)
    own = keywords(cls, RESERVED)
    if not cls.takes_margin:
        return own
    of_margins = dict.fromkeys(p for m in margins() for p in keywords(REGISTRY[m]) if p != "s")
    return ["margin", "s", *of_margins, *(p for p in own if p != "margin")]


def defaults(name: str) -> dict[str, Any]:
    """``{parameter: default}`` for loss ``name``'s parameters that have one, read from its constructor
    (a margin's: its margin's; a loss that takes a margin adds ``margin`` and ``s``, which its class
    declares), so that a default is written in one place."""
    if name.startswith(pml.PREFIX):
        cls = pml.loss_class(name.removeprefix(pml.PREFIX))
        found = pml.constructor_parameters(cls)
        return {n: found[n].default for n in pml.user_parameters(cls) if found[n].default is not inspect.Parameter.empty}
    cls = _entry(name)
    signature = inspect.signature(cls.__init__).parameters
    if is_margin(cls):
        return {n: signature[n].default for n in keywords(cls) if signature[n].default is not inspect.Parameter.empty}
    found = {n: signature[n].default for n in keywords(cls, RESERVED) if signature[n].default is not inspect.Parameter.empty}
    return {"margin": cls.default_margin, "s": cls.default_s} | found if cls.takes_margin else found


def with_shown(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` preceded by loss ``name``'s declared ``shown_params`` at their defaults (what a run's
    config and report name even when a comparison leaves them out)."""
    found = defaults(name)
    return {n: given.get(n, found[n]) for n in REGISTRY[name].shown_params} | given


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
    return _entry(name).family


__all__ = ["Loss", "MarginLogits", "MarginSoftmax", "REGISTRY", "get", "build_margin", "build_miner", "defaults",
           "family", "margins", "parameters", "with_shown"]
