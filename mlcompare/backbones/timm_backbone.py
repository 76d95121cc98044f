"""``timm:NAME``: any model of timm (PyTorch Image Models), its classifier replaced by our embedding head.

``timm.create_model(NAME, pretrained=False, num_classes=0)`` gives the trunk with its global
pooling and no classifier: ``[B, F]`` features. The head is the 1-D form of ArcFace's output
layer E (Deng et al. 2019, sec. 3.2): BatchNorm1d, Dropout, FC to ``embedding_dim``,
BatchNorm1d. Nothing is downloaded: weights come only from ``pretrained = "PATH"``, a local file.
timm is an optional extra (``pip install mlcompare[timm]``); it imports torchvision.
"""
from __future__ import annotations

import torch
from torch import nn

from mlcompare.errors import UserError

PREFIX = "timm:"


def import_timm():  # noqa: ANN201 - the module, or a one-line UserError
    try:
        import timm
    except ImportError as err:  # timm itself, or torchvision that timm imports
        raise UserError(f"backbone '{PREFIX}NAME' needs timm ({err}): pip install mlcompare[timm]") from err
    except (RuntimeError, OSError) as err:
        # A torchvision built for another torch (PyPI's CUDA wheel beside a CPU torch) fails inside its
        # own import with "operator torchvision::nms does not exist" or a missing shared library.
        import torch

        raise UserError(f"backbone '{PREFIX}NAME': timm is installed but torchvision, which it imports, does not load "
                        f"beside torch {torch.__version__} ({str(err).splitlines()[0]}); install the torchvision "
                        "built for this torch (for a CPU torch: pip install torchvision --index-url "
                        "https://download.pytorch.org/whl/cpu)") from err
    return timm


class TimmBackbone(nn.Module):
    """A timm trunk (``model_name``, random initialisation) + the embedding head.
    Input ``[B, 3, H, W]`` in [-1, 1]; output ``[B, embedding_dim]``, not normalised."""

    def __init__(self, *, model_name: str, image_size: int, embedding_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        timm = import_timm()
        try:
            self.trunk = timm.create_model(model_name, pretrained=False, num_classes=0)
        except RuntimeError as err:  # timm's "Unknown model (NAME)"
            raise UserError(f"backbone '{PREFIX}{model_name}': {err}; list timm's models with "
                            "python -c \"import timm; print(timm.list_models())\"") from err
        features = self.trunk.num_features
        self.head = nn.Sequential(nn.BatchNorm1d(features), nn.Dropout(dropout), nn.Linear(features, embedding_dim),
                                  nn.BatchNorm1d(embedding_dim))
        self.embedding_dim = embedding_dim
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))
