"""Any pytorch-metric-learning loss or miner as a method: ``loss = "pml:ClassName"``.

One adapter, :class:`PMLLoss`, wraps the library's loss module so that it follows our declared
interface (``mlcompare.losses.base.Loss``): its family comes from :data:`KNOWN` (or the method's
``family = "..."`` for a class not in the table), the sizes are filled in under the names the
class's constructor uses, its own parameters (class weights ``W``, ``proxies``, SoftTriple's
``fc``, MarginLoss's learnable ``beta``) are submodule parameters, so :meth:`Loss.head_parameters`
returns them (trained at ``train.loss_lr``) and ``state_dict`` saves them. Index tuples are the
same on both sides: our miners feed pml losses and pml miners (:class:`PMLMiner`) feed ours.

Units: pytorch-metric-learning's ``ArcFaceLoss`` / ``SubCenterArcFaceLoss`` take ``margin`` in
DEGREES (default 28.6 = 0.5 rad), ours (``arcface``, ``subcenter_arcface``) take ``m`` in radians.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlcompare.losses.base import Loss
from mlcompare.losses.parameters import check_known

PREFIX = "pml:"
PML_FAMILIES = ("pair", "proxy", "classification")

# Constructor keywords that hold objects (distances, reducers, regularisers) or the library's
# record keeping: not settable from a comparison file, which holds numbers, strings and booleans.
MACHINERY = frozenset({"self", "args", "kwargs", "distance", "reducer", "embedding_regularizer",
                       "embedding_reg_weight", "weight_regularizer", "weight_reg_weight", "weight_init_func",
                       "collect_stats", "mat_based_loss"})
# The sizes, under each name pytorch-metric-learning uses for them -> which of ours fills it.
SIZE_NAMES = {"num_classes": "num_classes", "embedding_size": "embedding_dim", "descriptors_dim": "embedding_dim"}


@dataclass(frozen=True)
class Known:
    """A tested pml loss class: its family for the report, and where its class weights live.

    ``weights``: the attribute holding one vector per class (per centre), ``""`` for none;
    ``classes_first``: its layout is ``[C * K, D]`` (True) or ``[D, C * K]`` (False); ``centers``:
    the constructor keyword giving ``K`` centres per class (``""``: one); ``paper``: the loss's paper,
    for ``mlcompare losses``."""

    family: str
    weights: str = ""
    classes_first: bool = False
    centers: str = ""
    paper: str = ""


KNOWN: dict[str, Known] = {
    # proxy-based metric learning
    "ProxyAnchorLoss": Known("proxy", "proxies", classes_first=True, paper="Kim et al. 2020"),
    "ProxyNCALoss": Known("proxy", "proxies", classes_first=True, paper="Movshovitz-Attias et al. 2017"),
    "SoftTripleLoss": Known("proxy", "fc", centers="centers_per_class", paper="Qian et al. 2019"),
    # classification (margin-softmax) losses
    "ArcFaceLoss": Known("classification", "W", paper="Deng et al. 2019"),
    "CosFaceLoss": Known("classification", "W", paper="Wang et al. 2018"),
    "SubCenterArcFaceLoss": Known("classification", "W", centers="sub_centers", paper="Deng et al. 2020"),
    "LargeMarginSoftmaxLoss": Known("classification", "W", paper="Liu et al. 2016"),
    "SphereFaceLoss": Known("classification", "W", paper="Liu et al. 2017"),
    "NormalizedSoftmaxLoss": Known("classification", "W", paper="Zhai & Wu 2018"),
    "P2SGradLoss": Known("classification", "weight", paper="Zhang et al. 2019"),
    # pair (embedding-based) losses
    "ContrastiveLoss": Known("pair", paper="Hadsell, Chopra & LeCun 2006"),
    "TripletMarginLoss": Known("pair", paper="Weinberger & Saul 2009"),
    "MultiSimilarityLoss": Known("pair", paper="Wang et al. 2019"),
    "NPairsLoss": Known("pair", paper="Sohn 2016"),
    "NTXentLoss": Known("pair", paper="Chen et al. 2020"),
    "SupConLoss": Known("pair", paper="Khosla et al. 2020"),
    "CircleLoss": Known("pair", paper="Sun et al. 2020"),
    "LiftedStructureLoss": Known("pair", paper="Oh Song et al. 2016"),
    "GeneralizedLiftedStructureLoss": Known("pair", paper="Hermans, Beyer & Leibe 2017"),
    "MarginLoss": Known("pair", paper="Wu et al. 2017"),
    "AngularLoss": Known("pair", paper="Wang et al. 2017"),
    "TupletMarginLoss": Known("pair", paper="Yu & Tao 2019"),
    "FastAPLoss": Known("pair", paper="Cakir et al. 2019"),
    "SignalToNoiseRatioContrastiveLoss": Known("pair", paper="Yuan et al. 2019"),
    "IntraPairVarianceLoss": Known("pair", paper="Yu & Tao 2019"),
    "NCALoss": Known("pair", paper="Goldberger et al. 2005"),
}


def _library():
    from pytorch_metric_learning import losses as pml_losses, miners as pml_miners
    return pml_losses, pml_miners


def loss_class(class_name: str) -> type[nn.Module]:
    """The pytorch-metric-learning loss class ``class_name``, or a one-line ``ValueError``."""
    pml_losses, _ = _library()
    cls = vars(pml_losses).get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, pml_losses.BaseMetricLossFunction)) or class_name.startswith("Base"):
        raise ValueError(f"pytorch-metric-learning has no loss '{class_name}'; known ones: {', '.join(sorted(KNOWN))}")
    return cls


def miner_class(class_name: str) -> type[nn.Module]:
    """The pytorch-metric-learning miner class ``class_name``, or a one-line ``ValueError``."""
    _, pml_miners = _library()
    cls = vars(pml_miners).get(class_name)
    if not (isinstance(cls, type) and issubclass(cls, pml_miners.BaseMiner)) or class_name.startswith("Base"):
        valid = sorted(n for n, c in vars(pml_miners).items()
                       if isinstance(c, type) and issubclass(c, pml_miners.BaseMiner) and not n.startswith("Base"))
        raise ValueError(f"pytorch-metric-learning has no miner '{class_name}'; its miners: {', '.join(valid)}")
    return cls


def constructor_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """Every keyword ``cls`` accepts through its ``**kwargs`` chain (the library passes them up the
    MRO), the most derived class's default first, machinery and sizes included."""
    found: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        if klass in (nn.Module, object) or "__init__" not in vars(klass):
            continue
        for name, param in inspect.signature(klass.__init__).parameters.items():
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                found.setdefault(name, param)
    return found


def user_parameters(cls: type) -> list[str]:
    """The parameters a comparison may set: the class's own, without sizes and machinery."""
    return [n for n in constructor_parameters(cls) if n not in MACHINERY and n not in SIZE_NAMES]


def resolve_family(class_name: str, family: str = "") -> str:
    """``class_name``'s family: the table's, or ``family`` for a class not in the table."""
    loss_class(class_name)
    if family and family not in PML_FAMILIES:
        raise ValueError(f"family must be one of {', '.join(PML_FAMILIES)}, got '{family}'")
    if class_name in KNOWN:
        known = KNOWN[class_name].family
        if family and family != known:
            raise ValueError(f"pml:{class_name} is a '{known}' loss; remove family = '{family}' (or set it to '{known}')")
        return known
    if not family:
        raise ValueError(f"pml:{class_name} is not in mlcompare's table of tested pml losses; give its family in the "
                         f"method: family = \"pair\", \"proxy\" or \"classification\"")
    return family


def _check_params(owner: str, cls: type, params: dict[str, Any]) -> None:
    check_known(owner, params, user_parameters(cls))
    for key, value in params.items():
        if not isinstance(value, (bool, int, float, str)):
            raise ValueError(f"{owner}: parameter '{key}' must be a number, string or boolean, got {type(value).__name__}")


class PMLMiner:
    """A pytorch-metric-learning miner called as ours: ``miner(embeddings, labels)`` -> the index
    tuple ``(a, p, n)`` or ``(a1, p, a2, n)`` (int64), which both libraries' losses take. A plain
    object, not a module, as our miners: it is held by a loss, never trained. The library's
    miners keep no state between batches, so ``state_dict`` is empty."""

    keeps_embeddings = False

    def __init__(self, class_name: str, **params: Any) -> None:
        cls = miner_class(class_name)
        _check_params(f"miner 'pml:{class_name}'", cls, params)
        self.class_name = class_name
        self.inner = cls(**params)

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.inner(embeddings, labels))

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore (see the class docstring)."""

    def __repr__(self) -> str:
        return f"PMLMiner({self.inner!r})"


class PMLLoss(Loss):
    """pytorch-metric-learning's loss ``class_name``, called as ours: ``loss(embeddings, labels)``.

    The value is exactly the library's ``inner(embeddings, labels, indices_tuple)``, with
    ``indices_tuple`` from ``miner`` (pair losses; None: the library's default of every pair or
    triplet in the batch). ``num_classes`` / ``embedding_dim`` go to the constructor under its own
    names (``num_classes``, ``embedding_size``, ``descriptors_dim``) where it takes them.
    ``angle_cosines``: cosines to the class weights (the maximum over a class's centres for
    SoftTriple and sub-centre ArcFace), for classes in :data:`KNOWN` that have them; else None.
    """

    def __init__(self, class_name: str, *, num_classes: int, embedding_dim: int, family: str = "",
                 miner: Any = None, **params: Any) -> None:
        super().__init__()
        cls = loss_class(class_name)
        self.family = resolve_family(class_name, family)  # per instance: one adapter, many families
        _check_params(f"loss 'pml:{class_name}'", cls, params)
        if miner is not None and self.family != "pair":
            raise ValueError(f"loss 'pml:{class_name}' is a {self.family} loss and takes no miner")
        if miner is not None and (isinstance(miner, str) or not callable(miner)):
            raise ValueError(f"miner must be a miner object (build one with mlcompare.losses.build_miner), got {miner!r}")
        sizes = {"num_classes": num_classes, "embedding_dim": embedding_dim}
        accepted = constructor_parameters(cls)
        filled = {name: sizes[ours] for name, ours in SIZE_NAMES.items() if name in accepted}
        self.class_name = class_name
        self.num_classes = num_classes
        self.known = KNOWN.get(class_name, Known(self.family))
        self.centers = int(params.get(self.known.centers, accepted[self.known.centers].default)) if self.known.centers else 1
        self.inner = cls(**filled, **params)
        self.miner = miner

    def class_weights(self) -> torch.Tensor | None:
        """``[C * K, D]`` class (centre) vectors, or None for a loss without them."""
        if not self.known.weights:
            return None
        w = getattr(self.inner, self.known.weights)  # the attribute named by the KNOWN table
        return w if self.known.classes_first else w.t()

    def angle_cosines(self, embeddings: torch.Tensor) -> torch.Tensor | None:
        w = self.class_weights()
        if w is None:
            return None
        cos = F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(w.float(), dim=1))
        return cos.view(cos.shape[0], self.num_classes, self.centers).amax(dim=2)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        indices = None
        if self.miner is not None:
            indices = self.miner(embeddings, labels)
            if any(t.is_floating_point() for t in indices):
                raise ValueError(f"pml:{self.class_name} takes index tuples; a miner returning embeddings "
                                 "(memory_bank) works only with mlcompare's own pair losses")
            self.stats = {"n_mined": torch.tensor(float(indices[0].numel()))}
        return self.inner(embeddings, labels, indices)

    def extra_repr(self) -> str:
        return f"pml:{self.class_name}, family={self.family}"
