"""NormFace (NormSoftmax): cosine logits with a scale, no margin."""
from __future__ import annotations

import torch

from mlcompare.config.search_space import Dim
from mlcompare.losses.margin_logits import TargetMargin
from mlcompare.losses.scale import Scale


class NormFace(TargetMargin):
    """``L = CE(s cos theta, y)``: features and class weights L2-normalised, scale ``s``.

    Wang et al., "NormFace: L2 Hypersphere Embedding for Face Verification", ACM MM 2017
    (arXiv:1704.06369). ``s`` fixed (a number; default 16, near the paper's lower bound for a few
    hundred classes), learnable (``{kind = "learnable", init = 16.0}``, as the paper's scale
    layer) or any ``Scale``. pytorch-metric-learning's NormalizedSoftmaxLoss is this with
    ``temperature = 1 / s``.
    """

    search_space = {"s": Dim(4.0, 64.0, log=True)}

    shown_params = ('s',)

    def __init__(self, *, s: float | Scale | dict = 16.0) -> None:
        super().__init__(s=s)

    def margin(self, cos_target: torch.Tensor) -> torch.Tensor:
        return cos_target
