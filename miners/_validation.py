"""Input checks shared by every miner: one-line ``ValueError`` naming the argument and the fix."""
from __future__ import annotations

import torch


class NonFiniteEmbeddings(ValueError):
    """The embeddings hold NaN or inf: the model diverged (a trainer marks the run failed on this)."""


def check_embeddings_and_labels(embeddings: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``embeddings`` is finite float ``[B, D]`` and ``labels`` integer ``[B]``."""
    if not isinstance(embeddings, torch.Tensor):
        raise ValueError(f"embeddings must be a torch.Tensor of shape [B, D], got {type(embeddings).__name__}")
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"labels must be a torch.Tensor of shape [B], got {type(labels).__name__}")
    if embeddings.dim() != 2:
        raise ValueError(f"embeddings must be 2-D [B, D], got shape {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"embeddings must be a float tensor, got dtype {embeddings.dtype}")
    if labels.dim() != 1:
        raise ValueError(f"labels must be 1-D [B], got shape {tuple(labels.shape)}")
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be an integer tensor (e.g. torch.int64), got dtype {labels.dtype}")
    if labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"labels has {labels.shape[0]} entries but embeddings has {embeddings.shape[0]} rows; they must match"
        )
    if labels.device != embeddings.device:
        raise ValueError(f"labels are on {labels.device} but embeddings on {embeddings.device}; put both on one device")
    if not bool(torch.isfinite(embeddings).all()):
        raise NonFiniteEmbeddings("embeddings contain NaN or infinite values; check the model output")


def check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")


def check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
