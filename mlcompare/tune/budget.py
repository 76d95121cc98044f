"""Each method's tuning budget, kept exact with any number of workers and lost trials.

The budget is ``trials`` trials, or with multi-fidelity pruning ``trials x folds x steps`` training
steps (a pruned trial costs the steps it trained, a failed one a full trial). Workers share nothing but the study, so a trial
claims its place by its Optuna trial number: it is run only if the trials before it (by number), at
what they spent or, still running, at a full trial's cost, leave room for a full trial of its own.
A claim never shrinks what an earlier trial may spend, so the budget cannot be overrun however the
workers interleave, and a started trial always fits.

A trial lost with its worker (failed by the heartbeat) is run again with the same parameters; the
retry takes the lost trial's place (its number) and the lost trial costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OVER_BUDGET = "over_budget"  # user attr of a trial that found no room (a race between workers): not run, not counted


@dataclass(frozen=True)
class Budget:
    """``total`` units per method, ``full`` of them for a trial run to the end."""

    total: int
    full: int
    unit: str  # "trials" or "steps"

    def cost(self, trial: Any) -> int:
        """What ``trial`` spent (complete or pruned) or may still spend (running, waiting); a failed
        trial costs a full one (a setting that fails at once must not make its method's search endless)."""
        if self.unit == "trials" or trial.state.name not in ("COMPLETE", "PRUNED"):
            return self.full
        return int(trial.user_attrs["steps"])


def place(trial: Any) -> int:
    """The trial number whose place ``trial`` holds: its own, or for a retry the lost trial's."""
    history = trial.system_attrs.get("retry_history")
    return history[0] if history else trial.number


def counted(trials: list[Any]) -> list[Any]:
    """The trials that hold a place: not replaced by a retry, not refused for want of room."""
    replaced = {n for t in trials for n in t.system_attrs.get("retry_history", ())}
    return [t for t in trials if t.number not in replaced and not (t.state.name == "FAIL" and t.user_attrs.get(OVER_BUDGET))]


def spent(budget: Budget, trials: list[Any]) -> int:
    return sum(budget.cost(t) for t in counted(trials))


def index(budget: Budget, trials: list[Any], trial: Any) -> int | None:
    """``trial``'s index in its method's search (0: the comparison's own setting), or None when the
    trials before it leave no room for it."""
    before = [t for t in counted(trials) if place(t) < place(trial) and t.number != trial.number]
    if sum(budget.cost(t) for t in before) + budget.full > budget.total:
        return None
    return len(before)


def has_room(budget: Budget, trials: list[Any]) -> bool:
    """Whether a new trial would fit now (a waiting retry always may run: it holds its place)."""
    return any(t.state.name == "WAITING" for t in trials) or spent(budget, trials) + budget.full <= budget.total


def running(trials: list[Any]) -> bool:
    return any(t.state.name == "RUNNING" for t in counted(trials))
