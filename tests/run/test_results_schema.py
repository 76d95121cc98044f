"""One results schema: scoring, results.csv, the report, its inputs and the tuning objectives read the
same tuple of metrics (mlcompare.config.results_schema.METRICS)."""
import csv

import pytest

from mlcompare.config import results_schema
from mlcompare.config import comparison as config
from mlcompare.config.results_schema import ResultRow
from mlcompare.report import render
from mlcompare.report import text as report_text
from mlcompare.run import saved


def test_every_rankable_metric_is_higher_is_better_and_the_config_ranks_by_them():
    assert results_schema.RANK_BY and all(results_schema.BY_NAME[n].higher_is_better for n in results_schema.RANK_BY)
    assert not results_schema.BY_NAME["eer"].higher_is_better
    assert config.OBJECTIVES == results_schema.RANK_BY
    assert config.RULES["tuning.objective"][1] == config.RULES["report.primary"][1] == "one of " + ", ".join(config.OBJECTIVES)


def test_the_report_and_its_inputs_read_the_schemas_columns():
    shown = [m.name for m in results_schema.METRICS if m.table == results_schema.ALWAYS]
    assert [c for c, _, _ in render.COLUMNS] == shown + ["images_per_s", "train_seconds"]
    assert list(saved.METRIC_COLUMNS) == shown + ["images_per_s", "train_seconds"]
    assert report_text.metric_name("map_at_r") == "MAP@R" and report_text.metric_name("cfp_fp.accuracy") == "cfp_fp.accuracy"


def test_a_row_lays_out_its_columns_in_the_files_order():
    row = ResultRow("a", "g", 1, "arcface", "classification", metrics={"accuracy": 0.5, "cfp_ff.accuracy": 0.7},
                    train_seconds=2.0, images_per_s=9.0, steps=3, setup={"params": "m=0.5"}, fold=2,
                    extra={"setting": "tuned"})
    assert list(row.as_dict()) == ["method", "group", "seed", "fold", "loss", "family", "status", "accuracy",
                                   "cfp_ff.accuracy", "train_seconds", "images_per_s", "steps", "message", "params",
                                   "setting"]
    failed = ResultRow("a", "g", 0, "arcface", "classification", status="failed", message="NaN loss", train_seconds=1.0)
    assert failed.as_dict() == {"method": "a", "group": "g", "seed": 0, "loss": "arcface", "family": "classification",
                                "status": "failed", "train_seconds": 1.0, "message": "NaN loss"}  # no fold, no steps


@pytest.mark.parametrize("primary", results_schema.RANK_BY)
def test_every_rankable_metric_is_accepted_as_primary_and_objective(tiny, primary):
    cfg = config.load(str(tiny), sets=[f"report.primary={primary}", f"tuning.objective={primary}"])
    assert (cfg.report.primary, cfg.tuning.objective) == (primary, primary)


def test_a_finished_runs_results_csv_holds_the_schemas_metrics(tiny_run):
    with open(tiny_run / "results.csv") as f:
        columns = csv.DictReader(f).fieldnames
    metrics = [c for c in columns if c in results_schema.BY_NAME]
    assert metrics == [m for m in results_schema.NAMES if m in metrics]
    assert set(results_schema.NAMES) - set(metrics) <= {"rank_1_head", "rank_1_tail"}  # digits: no tail
