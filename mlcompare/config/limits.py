"""Lists and ranges that more than one layer checks (the config, the command line, the backbones'
autocast, the data specs, the trainer): each is defined here once and read everywhere else.

This module imports nothing of mlcompare but its error type, so that the config can check a value
before torch loads and the layers below the config can read the same list without importing it.
"""
from __future__ import annotations

from mlcompare.errors import UserError

# Autocast precisions of the backbone (the losses stay float32); backbones/running.py maps each to a dtype.
PRECISIONS = ("fp32", "bf16", "fp16")
# --budget: multiples of a comparison's own steps (or epochs) and warm-up.
BUDGETS = {"quick": 1, "standard": 4, "long": 16}
# Share of training labels flipped to another identity (a method's label_noise, synthfaces:label_noise=X).
# [0, 1): every share below 1 leaves some images their own label, and the flips (data/noise.py) are defined
# for all of them; the data spec's former cap of 0.9 was arbitrary, and the wider range refuses nothing the
# config accepted.
LABEL_NOISE_TEXT = "in [0, 1)"


def label_noise_ok(value: float) -> bool:
    return 0 <= value < 1


def check_batch_split(p: int, world_size: int, where: str) -> None:
    """P identities per batch split evenly over the torchrun ranks (each rank draws P / world_size)."""
    if p % world_size:
        raise UserError(f"{where}: p={p} identities per batch do not split over {world_size} ranks; "
                        f"make p a multiple of {world_size}")
