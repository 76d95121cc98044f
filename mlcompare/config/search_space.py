"""Search dimensions for ``mlcompare tune``, declared where the parameters live.

Each loss declares ``search_space`` beside its defaults (``mlcompare.losses.base.Loss``), the trainer
its own (``mlcompare.train.trainer.SEARCH_SPACE``); a comparison's ``[methods.search]`` table narrows,
widens, fixes or adds a dimension per method:

- ``m = [0.2, 0.6]``: search ``m`` over that range (on the declared scale: log stays log);
- ``m = { low = 0.2, high = 0.6, log = true, integer = false }``: a dimension in full (adds one);
- ``m = 0.5``: fix ``m`` (not searched).

Values are sampled through Optuna's ``trial.suggest_float`` / ``suggest_int`` (TPE, seeded).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from mlcompare.errors import UserError

# A chosen value within this share of its range's width from an edge (in log space for a log dimension) is
# flagged: the search may have stopped at its own boundary, and the best setting lie beyond it.
EDGE_SHARE = 0.05


@dataclass(frozen=True)
class Dim:
    """A range ``[low, high]``, sampled log-uniformly with ``log`` and as integers with ``integer``."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"a search range needs finite low <= high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"a log-scale search range needs low > 0, got [{self.low}, {self.high}]")

    def including(self, value: float) -> "Dim":
        """Widened to hold ``value`` (the comparison's own setting is always the first trial)."""
        return replace(self, low=min(self.low, value), high=max(self.high, value))

    def edge(self, value: float, *, within: float = EDGE_SHARE) -> str:
        """"low" or "high" when ``value`` lies within ``within`` of the range's width of that end (the
        width in log space for a log dimension), else "".

        >>> Dim(1e-4, 1e-2, log=True).edge(0.0084), Dim(1e-4, 1e-2).edge(0.0084), Dim(0.0, 1.0).edge(0.04)
        ('high', '', 'low')
        """
        if self.high <= self.low:
            return ""
        scale = math.log if self.log else float
        share = (scale(value) - scale(self.low)) / (scale(self.high) - scale(self.low))
        return "low" if share <= within else "high" if share >= 1 - within else ""

    def suggest(self, trial: Any, name: str) -> float | int:
        if self.integer:
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, log=self.log)


def at_edges(values: dict[str, Any], dims: dict[str, Dim]) -> dict[str, str]:
    """``{name: "the high end of [low, high]"}`` for each value of ``values`` at an edge of its dimension in
    ``dims`` (see :meth:`Dim.edge`); a value with no dimension (a fixed one) is never flagged."""
    found = {}
    for name, value in values.items():
        dim = dims.get(name)
        if dim is not None and isinstance(value, (int, float)) and (edge := dim.edge(float(value))):
            found[name] = f"{edge} end of [{dim.low:.3g}, {dim.high:.3g}]"
    return found


def override(name: str, value: Any, declared: Dim | None, *, where: str) -> Dim | float | int | str | bool:
    """A ``[methods.search]`` entry applied to the declared dimension (None: the name is added)."""
    try:
        if isinstance(value, list):
            if len(value) != 2:
                raise UserError(f"{where}: search.{name} = {value!r}: a range is [low, high]")
            base = declared or Dim(0.0, 1.0)
            return replace(base, low=float(value[0]), high=float(value[1]))
        if isinstance(value, dict):
            unknown = set(value) - {"low", "high", "log", "integer"}
            if unknown or not {"low", "high"} <= set(value):
                raise UserError(f"{where}: search.{name} = {value!r}: give {{ low = ..., high = ..., log = true|false, "
                                "integer = true|false }}")
            return Dim(float(value["low"]), float(value["high"]), bool(value.get("log", False)),
                       bool(value.get("integer", False)))
    except ValueError as err:
        raise UserError(f"{where}: search.{name}: {err}") from err
    return value  # a fixed value


__all__ = ["Dim", "EDGE_SHARE", "at_edges", "override"]
