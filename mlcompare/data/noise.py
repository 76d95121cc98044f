"""Synthetic label noise on a training set: the same flips for every method at a given level."""
from __future__ import annotations

import dataclasses

import torch

from mlcompare.data.facedata import FaceData


def flip_labels(data: FaceData, fraction: float, *, seed: int) -> FaceData:
    """Give ``round(fraction * N)`` images, chosen seeded, a uniformly drawn *other* identity.

    The result's ``noisy`` marks the flipped images (combined with any noise the source
    already recorded), so reports can tell clean from noisy.
    """
    if fraction <= 0:
        return data
    g = torch.Generator().manual_seed(seed)
    n = len(data)
    flipped = torch.randperm(n, generator=g)[: round(fraction * n)]
    # An offset in 1..C-1 added modulo C never lands on the true identity.
    offset = torch.randint(1, data.num_identities, (len(flipped),), generator=g)
    labels = data.labels.clone()
    labels[flipped] = (labels[flipped] + offset) % data.num_identities
    noisy = torch.zeros(n, dtype=torch.bool) if data.noisy is None else data.noisy.clone()
    noisy[flipped] = True
    return dataclasses.replace(data, labels=labels, noisy=noisy)
