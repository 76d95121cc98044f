"""Shared random batches for the miner tests."""
from __future__ import annotations

import pytest
import torch


def random_batch(batch: int, dim: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g), torch.randint(0, classes, (batch,), generator=g)


def as_set(indices: tuple[torch.Tensor, ...]) -> set[tuple[int, ...]]:
    return set(zip(*[t.tolist() for t in indices]))


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    return random_batch(48, 16, 7, seed=0)
