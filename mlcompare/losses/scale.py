"""Scale schedules for normalised losses: the ``s`` that multiplies cosine logits.

A normalised loss (NormFace, CosFace, ArcFace, ...) computes ``s * f(cos theta)``; the paper
either fixes ``s`` (CosFace s=64 for faces), learns it (NormFace) or changes it over training
(Heated-up softmax, Zhang et al. 2018, arXiv:1809.04157). Each schedule is a small module passed
to the loss as ``s=``; the loss calls ``set_progress`` before every step and ``scale()`` in forward.

From a config, ``s`` may be a number (fixed), or a table with ``kind`` and that kind's
keywords, e.g. ``{kind = "learnable", init = 16.0}`` or
``{kind = "heated_up", start = 16.0, end = 64.0, warmup = 0.5}``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mlcompare.losses.normalized import upcast_half
from mlcompare.losses.parameters import check_known, keywords


class Scale(nn.Module):
    """Base of scale schedules: ``forward() -> scalar tensor s > 0``."""

    def set_progress(self, step: int, total_steps: int) -> None:
        """Called before each step by the owning loss; fixed scales ignore it."""

    def forward(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def _positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


class FixedScale(Scale):
    """``s`` constant over training (CosFace, ArcFace)."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = _positive("s", s)
        self.register_buffer("_value", torch.tensor(self.s), persistent=False)

    def forward(self) -> torch.Tensor:
        return self._value

    def extra_repr(self) -> str:
        return f"s={self.s}"


class LearnableScale(Scale):
    """``s`` learnt with the network (NormFace, Wang et al. 2017, arXiv:1704.06369, sec. 3.3).

    Stored as ``log s`` so that gradient steps keep ``s > 0``; ``init`` is the starting ``s``.
    """

    def __init__(self, init: float = 16.0) -> None:
        super().__init__()
        self.log_s = nn.Parameter(torch.tensor(math.log(_positive("init", init))))

    def forward(self) -> torch.Tensor:
        return self.log_s.exp()


class HeatedUpScale(Scale):
    """``s`` moved from ``start`` to ``end`` over the first ``warmup`` fraction of training.

    The interpolation is linear in the training fraction ``t = step / total_steps``:
    ``s(t) = start + (end - start) * min(t / warmup, 1)``. The issue's "heated-up" is a rising
    ``s`` (start < end, the default); the Heated-up softmax paper lowers ``s`` late in training
    (its "heating" = raising the temperature 1/s): give ``start > end`` for that.
    """

    def __init__(self, start: float = 16.0, end: float = 64.0, warmup: float = 1.0) -> None:
        super().__init__()
        self.start = _positive("start", start)
        self.end = _positive("end", end)
        if not 0 < warmup <= 1:
            raise ValueError(f"warmup must be a training fraction in (0, 1], got {warmup!r}")
        self.warmup = float(warmup)
        self.register_buffer("_value", torch.tensor(self.start), persistent=False)

    def set_progress(self, step: int, total_steps: int) -> None:
        t = min(max(step / max(total_steps, 1), 0.0) / self.warmup, 1.0)
        self._value.fill_(self.start + (self.end - self.start) * t)

    def forward(self) -> torch.Tensor:
        return self._value

    def extra_repr(self) -> str:
        return f"start={self.start}, end={self.end}, warmup={self.warmup}"


SCALES: dict[str, type[Scale]] = {"fixed": FixedScale, "learnable": LearnableScale, "heated_up": HeatedUpScale}


def scale_value(scale: Scale | None, embeddings: torch.Tensor) -> torch.Tensor:
    """Scalar ``s``, or ``[B, 1]`` feature norms ``|x_i|`` where there is no scale (A-Softmax's un-normalised features)."""
    return upcast_half(embeddings).norm(dim=1, keepdim=True) if scale is None else scale()


def make_scale(s: float | Scale | dict) -> Scale:
    """Turn a number, a ``Scale`` or a config table ``{kind = ..., ...}`` into a ``Scale``."""
    if isinstance(s, Scale):
        return s
    if isinstance(s, bool):
        raise ValueError(f"s must be a number > 0, a Scale or a table with 'kind' in {sorted(SCALES)}, got {s!r}")
    if isinstance(s, (int, float)):
        return FixedScale(float(s))
    if isinstance(s, dict):
        params = dict(s)
        kind = params.pop("kind", None)
        if kind not in SCALES:
            raise ValueError(f"scale table needs 'kind' in {sorted(SCALES)}, got {kind!r}")
        cls = SCALES[kind]
        check_known(f"scale kind '{kind}'", params, keywords(cls))
        return cls(**params)
    raise ValueError(f"s must be a number > 0, a Scale or a table with 'kind' in {sorted(SCALES)}, got {s!r}")
