"""Margin-based loss (Wu, Manmatha, Smola & Kraehenbuehl 2017, "Sampling Matters in Deep Embedding Learning")."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import miners
from mlcompare.config.search_space import Dim
from mlcompare.losses.pair import MinerLike, PairLoss, mined_triplet_distances


class MarginLoss(PairLoss):
    """Positive pairs pulled inside ``beta - alpha``, negatives pushed beyond ``beta + alpha``.

    .. math::
        \\ell(a, x) = \\max\\big(0,\\; \\alpha + y_{ax}\\,(d(a, x) - \\beta_{c(a)})\\big), \\quad
        y_{ax} = +1 \\text{ (positive)},\\; -1 \\text{ (negative)}

    applied to both pairs of every mined triplet ``(a, p, n)``; ``d`` is Euclidean on
    L2-normalised embeddings (range ``[0, 2]``). ``beta`` is one learnable scalar or one per class
    (indexed by the anchor's label), initialised at ``beta``; ``nu`` adds Wu et al.'s
    regulariser ``nu * beta`` (summed over the triplets' betas, divided like the loss).

    Args:
        num_classes: number of classes (size of the per-class beta).
        embedding_dim: given by the registry; unused.
        alpha: the margin (Wu et al. 0.2).
        beta: initial boundary (Wu et al. 1.2).
        nu: beta regularisation weight (0 disables it).
        learn_beta: make beta an ``nn.Parameter`` (the trainer must then optimise the loss's parameters).
        beta_per_class: one beta per class instead of a global one.
        reduction: ``"nonzero"`` (default; pytorch-metric-learning's ``MarginLoss``): sum of all
            terms divided by the number of non-zero pair terms; ``"all"``: divided by ``2 T``.
        miner: a miner object, or None for ``miners.DistanceWeightedMiner()`` (Wu et al.).

    ``stats``: ``active_fraction`` (non-zero pair terms / ``2 T``), ``n_mined`` (``T``), ``beta_mean``.
    """

    search_space = {"alpha": Dim(0.05, 0.5), "beta": Dim(0.6, 1.6)}

    shown_params = ('alpha', 'beta')

    def __init__(
        self,
        *,
        num_classes: int,
        embedding_dim: int,
        alpha: float = 0.2,
        beta: float = 1.2,
        nu: float = 0.0,
        learn_beta: bool = True,
        beta_per_class: bool = True,
        reduction: str = "nonzero",
        miner: MinerLike | None = None,
    ) -> None:
        super().__init__(miner=miner, default_miner=miners.DistanceWeightedMiner(), reduction=reduction)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        if not nu >= 0:
            raise ValueError(f"nu must be >= 0, got {nu}")
        if beta_per_class and not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(f"num_classes must be a positive int for beta_per_class=True, got {num_classes!r}")
        self.alpha = float(alpha)
        self.nu = float(nu)
        init = torch.full((num_classes if beta_per_class else 1,), float(beta))
        if learn_beta:
            self.beta = nn.Parameter(init)
        else:
            self.register_buffer("beta", init)
        self.beta_per_class = bool(beta_per_class)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        mined = self.miner(embeddings, labels)
        d_ap, d_an, anchor = mined_triplet_distances(mined, embeddings, normalize=True, squared=False)
        if d_ap.numel() == 0:
            loss = self.nothing_mined(embeddings) + self.beta.sum() * 0.0
            self.stats["beta_mean"] = self.beta.detach().mean()
            return loss
        beta = self.beta[labels[anchor]] if self.beta_per_class else self.beta.expand_as(d_ap)
        beta = beta.to(d_ap.dtype)
        pos = F.relu(self.alpha + (d_ap - beta))
        neg = F.relu(self.alpha - (d_an - beta))
        active = (pos > 0).sum() + (neg > 0).sum()
        divisor = active.clamp_min(1) if self.reduction == "nonzero" else torch.tensor(2 * d_ap.numel())
        loss = (pos.sum() + neg.sum()) / divisor
        if self.nu > 0:
            if self.beta_per_class:
                # per-triplet betas share the loss's divisor (none at all when no term is active)
                reg = beta.sum() / divisor * (active > 0)
            else:
                reg = beta[0]
            loss = loss + self.nu * reg
        self.stats = {
            "active_fraction": (active.float() / (2 * d_ap.numel())).detach(),
            "n_mined": torch.tensor(float(d_ap.numel())),
            "beta_mean": self.beta.detach().mean(),
        }
        return loss
