"""TensorBoard event files of one method x seed: ``RUN/tensorboard/METHOD-sSEED``.

What is logged is what the run already records, in the same units: every history row of the
trainer (``train/loss``, ``train/lr``, the loss's own statistics ``train/NAME``, and
``val/accuracy`` where it was measured), at the row's step; at the end the test scores
(``test/NAME``, at the last step) and the embeddings of a sample of test identities for the
projector. Written on rank 0 only (the runner creates no logger on other ranks). Needs the
``tensorboard`` package: ``pip install mlcompare[tensorboard]``.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from mlcompare.config.names import slug
from mlcompare.errors import UserError

INSTALL = "pip install mlcompare[tensorboard]"


def check_available() -> None:
    """A one-line :class:`UserError` naming the extra when tensorboard cannot be imported."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError as err:
        raise UserError(f"--tensorboard (or [logging] tensorboard = true) needs tensorboard ({err}): {INSTALL}") from err


def log_dir(run: Path, method: str, seed: int) -> Path:
    return run / "tensorboard" / f"{slug(method)}-s{seed}"  # the name is untrusted: a slug, never a path


class TensorBoardLog:
    """One SummaryWriter; :meth:`history_row` is the trainer's ``log`` callable."""

    def __init__(self, directory: Path) -> None:
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(directory))
        self.last_step = 0

    def history_row(self, row: dict[str, Any]) -> None:
        """A trainer history row ``{"step", "loss", "lr", stats..., ["val_accuracy"]}`` as scalars."""
        step = int(row["step"])
        self.last_step = max(self.last_step, step)
        for key, value in row.items():
            if key != "step":
                tag = "val/accuracy" if key == "val_accuracy" else f"train/{key}"
                self.writer.add_scalar(tag, float(value), step)

    def test_scores(self, metrics: dict[str, Any]) -> None:
        """The method's test scores (finite numbers only: counts and NaNs of degenerate cases are left out)."""
        for key, value in metrics.items():
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                self.writer.add_scalar(f"test/{key}", float(value), self.last_step)

    def projector(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Embeddings ``[N, D]`` of test images and their identities ``[N]``, for the projector tab."""
        if len(embeddings):
            self.writer.add_embedding(embeddings.float(), metadata=[int(x) for x in labels], global_step=self.last_step,
                                      tag="test_sample")

    def close(self) -> None:
        self.writer.close()
