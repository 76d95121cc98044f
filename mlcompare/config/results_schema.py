"""The results.csv schema: the metrics a method is scored by, and the row one method x seed leaves.

:data:`METRICS` is the one list of metric columns, each with its direction and the names the report
gives it; scoring fills them, results.csv holds them, the report reads and ranks by them and the tuning
objective is one of them. Benchmarks add ``NAME.METRIC`` columns (mlcompare/run/benchmarks.py), and runs
with cross-validation a ``fold`` column; :class:`ResultRow` carries both. This module imports nothing
heavy, so that the config can check a metric name before torch loads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALWAYS, MEASURED = "always", "when measured"  # when the report's table shows a metric


@dataclass(frozen=True)
class Metric:
    """One metric column: ``name`` in results.csv, ``higher_is_better``, ``label`` in prose, ``header``
    in the report's table, when the table shows it (``table``: ALWAYS, MEASURED or "" for never) and
    whether a comparison may rank methods by it (``[report] primary``, ``[tuning] objective``)."""

    name: str
    higher_is_better: bool
    label: str
    header: str = ""
    table: str = ""
    rank_by: bool = False


METRICS: tuple[Metric, ...] = (
    # rank-1 of head / tail identities: only where test identities differ in image count (scoring.head_tail_rank1)
    Metric("rank_1_head", True, "rank-1 of head identities", "Rank-1 head", MEASURED),
    Metric("rank_1_tail", True, "rank-1 of tail identities", "Rank-1 tail", MEASURED),
    Metric("accuracy", True, "verification accuracy", "Verif. acc.", ALWAYS, rank_by=True),
    Metric("accuracy_std", False, "std of verification accuracy over the pair folds"),
    Metric("auc", True, "AUC", "AUC", ALWAYS, rank_by=True),
    Metric("eer", False, "EER", "EER", ALWAYS),
    Metric("tar_far_1e-2", True, "TAR@FAR=1e-2", "TAR@FAR=1e-2", ALWAYS),
    Metric("tar_far_1e-3", True, "TAR@FAR=1e-3", "TAR@FAR=1e-3", ALWAYS, rank_by=True),
    Metric("rank_1", True, "rank-1", "Rank-1", ALWAYS, rank_by=True),
    Metric("rank_5", True, "rank-5", "Rank-5", ALWAYS),
    Metric("map_at_r", True, "MAP@R", "MAP@R", ALWAYS, rank_by=True),
    # P@1 (in results.csv since the first round) is shown with R-Precision, which came later, so that the
    # retrieval trio of "A Metric Learning Reality Check" (P@1, R-Precision, MAP@R) shows together
    Metric("precision_at_1", True, "P@1", "P@1", MEASURED),
    Metric("r_precision", True, "R-Precision", "R-Prec.", MEASURED),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# Scores a comparison can rank methods by (the tuning objective, the report's primary metric); each is higher
# is better: the report ranks best first and Optuna maximises the objective (tests/run/test_results_schema.py).
RANK_BY: tuple[str, ...] = tuple(m.name for m in METRICS if m.rank_by)
# The cost columns of a row (not metrics: never compared for bit-identical results).
TIMING = ("train_seconds", "images_per_s")


def label(name: str) -> str:
    """What the report calls metric ``name`` (the name itself for a column not in :data:`METRICS`)."""
    return BY_NAME[name].label if name in BY_NAME else name


@dataclass
class ResultRow:
    """One results.csv row: a method x seed (x fold) and its scores.

    ``metrics``: :data:`METRICS` values and benchmark columns, as scoring returns them; ``setup``: what a
    trained method ran with (params, label_noise, embedding_dim, p, k, train_identities, precision; empty
    for the raw-pixel floor); ``extra``: a command's own columns (tune's ``setting``, ``validation``)."""

    method: str
    group: str
    seed: int
    loss: str
    family: str
    status: str = "ok"
    metrics: dict[str, Any] = field(default_factory=dict)
    # None: not measured (a failed run has no throughput or steps): the cell stays empty
    train_seconds: float | None = None
    images_per_s: float | None = None
    steps: int | None = None
    message: str = ""
    setup: dict[str, Any] = field(default_factory=dict)
    fold: int = 0  # 0: no cross-validation (no fold column)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The row as results.csv columns, in the file's order."""
        key = {"method": self.method, "group": self.group, "seed": self.seed} | ({"fold": self.fold} if self.fold else {})
        cost = {"train_seconds": self.train_seconds, "images_per_s": self.images_per_s, "steps": self.steps}
        return (key | {"loss": self.loss, "family": self.family, "status": self.status} | self.metrics
                | {k: v for k, v in cost.items() if v is not None} | {"message": self.message} | self.setup | self.extra)
