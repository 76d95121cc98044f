"""Chosen values at the edge of their searched range: flagged in the report and warned about by `tune`."""
import json
import math

import optuna
import pandas as pd
import pytest

from mlcompare.cli import main
from mlcompare.config.search_space import Dim, at_edges
from mlcompare.report import tuning as report_tuning
from mlcompare.report.style import method_styles
from mlcompare.run import comparison_tests
from mlcompare.tune import tuning
from tests.conftest import TINY

LR = Dim(1e-4, 1e-2, log=True)
M = Dim(0.05, 0.6)


@pytest.mark.parametrize("dim, value, edge", [
    (LR, 0.0084, "high"),  # log share (ln 0.0084 - ln 1e-4) / (ln 1e-2 - ln 1e-4) = 0.962 (0.84 on a linear scale)
    (LR, 0.0053, ""),  # 0.862
    (LR, 1.2e-4, "low"),  # 0.040
    (M, 0.58, "high"),  # (0.58 - 0.05) / 0.55 = 0.964
    (M, 0.564, ""),  # 0.935
    (M, 0.07, "low"),  # 0.036
    (Dim(2, 4, integer=True), 2, "low"), (Dim(2, 4, integer=True), 3, ""), (Dim(1.0, 1.0), 1.0, ""),
])
def test_edge_within_five_percent_of_the_width_in_log_space_for_log_dimensions(dim, value, edge):
    assert dim.edge(value) == edge


def constructed_study(best_lr: float) -> optuna.Study:
    """Three trials on (lr, m); the best has lr = ``best_lr`` and m = 0.3, inside its range."""
    study = optuna.create_study(direction="maximize")
    dists = {"lr": optuna.distributions.FloatDistribution(LR.low, LR.high, log=True),
             "m": optuna.distributions.FloatDistribution(M.low, M.high)}
    for index, (lr, m, value) in enumerate([(1e-3, 0.35, 0.40), (best_lr, 0.3, 0.55), (3e-4, 0.5, 0.45)]):
        study.add_trial(optuna.trial.create_trial(params={"lr": lr, "m": m}, distributions=dists, value=value,
                                                  user_attrs={"index": index, "fold_scores": [value, value],
                                                              "seconds": 1.0}))
    return study


def test_tune_warns_about_a_best_value_at_an_edge_and_not_inside():
    spaces = {name: tuning.Space({"lr": LR, "m": M}, {}, {}) for name in ("arcface", "softmax")}
    lines = tuning.edge_warnings({"arcface": constructed_study(0.0098), "softmax": constructed_study(2e-3)}, spaces)
    assert len(lines) == 1
    assert lines[0].startswith("arcface: the tuned lr=0.0098 at the high end of [0.0001, 0.01]: the best setting may "
                               "lie beyond the range; widen [methods.search]")


def test_the_report_marks_a_chosen_value_at_an_edge(tmp_path):
    study = constructed_study(0.0098)
    (tmp_path / "tuning").mkdir()
    tuning.trials_table({"arcface": study}, folds=2).to_csv(tmp_path / "tuning" / "trials.csv", index=False)
    (tmp_path / "tuning" / "space.json").write_text(json.dumps({"arcface": {"lr": vars(LR), "m": vars(M)}}))
    (tmp_path / "config.json").write_text(json.dumps({"seeds": 2, "tuning": {"objective": "map_at_r", "trials": 3,
                                                                             "folds": 2, "prune": False}}))
    results = pd.DataFrame({"method": ["arcface", "arcface", "arcface-tuned", "arcface-tuned"], "seed": [0, 1, 0, 1],
                            "status": "ok", "setting": ["default", "default", "tuned", "tuned"], "family": "classification",
                            "map_at_r": [0.40, 0.42, 0.50, 0.53]})
    styles = method_styles(["arcface", "arcface-tuned"])
    tests = {"tuning": comparison_tests.tuning(results, pd.read_csv(tmp_path / "tuning" / "trials.csv"), "map_at_r")}
    section = report_tuning.section(tmp_path, results, styles, tmp_path, tests)
    row = dict(zip(section.header, section.rows[0]))
    assert row["Tuned setting"] == "lr=0.0098 (at the high end of [0.0001, 0.01]) m=0.3"
    assert row["Default setting"] == "lr=0.001 m=0.35"  # the default is not what was chosen: not marked
    assert any(t.startswith("At a range edge (within 5% of its width from an end, in log space for log dimensions): "
                            "arcface lr.") for t in section.paragraphs)
    (tmp_path / "tuning" / "space.json").unlink()  # a run tuned before the ranges were saved: nothing marked
    assert "at the" not in dict(zip(section.header, report_tuning.section(tmp_path, results, styles, tmp_path, tests).rows[0]))["Tuned setting"]


def test_mlcompare_tune_warns_at_the_end_and_its_report_marks_it(tmp_path):
    # one trial, the comparison's own setting, whose weight decay 5e-4 is the low end of the range searched
    toml = TINY.replace("p = 4", "p = 2").replace("[[methods]]", "[tuning]\ntrials = 1\nfolds = 2\n[[methods]]", 1)
    toml = toml.replace('loss = "softmax"\n', 'loss = "softmax"\nsearch = { weight_decay = [5e-4, 1e-2] }\n', 1)
    (tmp_path / "t.toml").write_text(toml)
    with pytest.warns(UserWarning, match=r"softmax: the tuned weight_decay=0.0005 at the low end of \[0.0005, 0.01\]"):
        assert main(["tune", str(tmp_path / "t.toml"), "--out", str(tmp_path / "run"), "--steps", "3",
                     "--no-progress"]) == 0
    assert "(at the low end of [0.0005, 0.01])" in (tmp_path / "run" / "report.md").read_text()
    assert math.isclose(json.loads((tmp_path / "run" / "tuning" / "space.json").read_text())
                        ["softmax"]["weight_decay"]["high"], 1e-2)
    assert at_edges({"weight_decay": 5e-4}, {"weight_decay": Dim(5e-4, 1e-2, log=True)}) == \
        {"weight_decay": "low end of [0.0005, 0.01]"}
