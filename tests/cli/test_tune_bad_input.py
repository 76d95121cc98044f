"""`mlcompare tune` checks everything it can before the run directory exists: its search entries
(each fixed value and range end built into the loss), whether the folds can measure the objective,
and, with --resume, that the folder is a tune run with a readable study. Exit 2, one line, no files."""
import json
import sqlite3

import pytest

from mlcompare.cli import main
from tests.cli.test_bad_input import error_line
from tests.cli.test_run_directory_safety import files_under
from tests.tuning.test_tuning import STEPS, TUNE


@pytest.mark.parametrize("search, expected", [
    ("{ margin = [0.1, 0.2] }", "search.margin is not a parameter of loss 'arcface'"),
    ("{ m = [0.6, 0.2] }", "search.m: a search range needs finite low <= high, got [0.6, 0.2]"),
    ("{ lr = { low = 0.0, high = 0.1, log = true } }", "search.lr: a log-scale search range needs low > 0"),
    ("{ m = 3.0 }", "[methods.search] of 'arcface' gives the loss a value it rejects (method 'arcface': m"),
    ('{ m = "wide" }', "[methods.search] of 'arcface' gives the loss a value it rejects"),
    ("{ m = [0.2, 4.0] }", "got 4.0; at s = 128.0, m = 4.0"),  # the high ends of s (declared) and m
])
def test_a_bad_search_entry_is_refused_before_the_run_directory_exists(tmp_path, capsys, search, expected):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TUNE + f'[[methods]]\nname = "arcface"\nloss = "arcface"\nsearch = {search}\n')
    before = files_under(tmp_path)
    assert main(["tune", str(cfg), "--out", str(tmp_path / "run"), *STEPS]) == 2
    assert expected in error_line(capsys)
    assert files_under(tmp_path) == before


def test_tuned_rows_that_would_share_files_with_a_method_are_refused(tmp_path, capsys):
    cfg = tmp_path / "t.toml"
    cfg.write_text(TUNE + '[[methods]]\nname = "softmax-tuned"\nloss = "cosface"\n')
    assert main(["tune", str(cfg), "--out", str(tmp_path / "run"), *STEPS]) == 2
    assert ("tune: the tuned row 'softmax-tuned' and method 'softmax-tuned' would write the same files"
            in error_line(capsys))
    assert not (tmp_path / "run").exists()


def test_an_objective_the_folds_cannot_measure_is_refused_up_front(tmp_path, capsys):
    # digits: 6 training identities in 2 folds; 400 pairs per fold give ~200 impostor pairs < 1000
    cfg = tmp_path / "t.toml"
    cfg.write_text(TUNE.replace("folds = 2", 'folds = 2\nobjective = "tar_far_1e-3"'))
    before = files_under(tmp_path)
    assert main(["tune", str(cfg), "--out", str(tmp_path / "run"), *STEPS]) == 2
    line = error_line(capsys)
    assert "tuning.objective = tar_far_1e-3 needs 1000 impostor pairs per validation fold, and fold 1 has" in line
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("damage", ["truncated", "text"])
def test_resume_on_a_damaged_study_is_one_line_naming_the_file(tmp_path, capsys, damage):
    run = tmp_path / "run"
    (run / "tuning").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"name": "t"}))
    db = run / "tuning" / "study.db"
    if damage == "truncated":
        with sqlite3.connect(db) as con:
            con.execute("create table trials (x blob)")
            con.executemany("insert into trials values (?)", [(bytes(500),)] * 200)
        con.close()
        db.write_bytes(db.read_bytes()[:db.stat().st_size // 2])
    else:
        db.write_text("not sqlite\n" * 20)
    cfg = tmp_path / "t.toml"
    cfg.write_text(TUNE)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert main(["tune", str(cfg), "--out", str(run), "--resume", *STEPS]) == 2
    assert f"tune --resume: '{db}' is not a readable Optuna study" in error_line(capsys)
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_tune_resume_into_a_run_directory_says_what_it_is(tiny_run, capsys):
    before = files_under(tiny_run)
    assert main(["tune", str(tiny_run.parent / "tiny.toml"), "--out", str(tiny_run), "--resume", *STEPS]) == 2
    assert f"'{tiny_run}' was made by `mlcompare run` (no tuning/ folder)" in error_line(capsys)
    assert files_under(tiny_run) == before


def test_a_method_s_own_train_value_that_tune_searches_is_refused(tmp_path, capsys):
    from tests.conftest import TINY

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace('name = "softmax"\nloss = "softmax"', 'name = "softmax"\nloss = "softmax"\ntrain = { lr = 1e-3 }'))
    out = tmp_path / "run"
    assert main(["tune", str(cfg), "--out", str(out), "--no-progress", "--trials", "1", "--folds", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mlcompare: error")]
    assert err == ["mlcompare: error: method 'softmax' sets train.lr for itself, which tune searches; remove it from "
                   "the method's train table, or fix it in [methods.search] instead"]
    assert not out.exists()


def test_tune_refuses_a_cross_validated_comparison(tmp_path, capsys):
    from tests.conftest import TINY

    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY + '[[benchmarks]]\nkind = "cfp"\npath = "nowhere"\nprotocol = "FP"\n[crossval]\nbenchmark = "cfp_fp"\n')
    out = tmp_path / "run"
    assert main(["tune", str(cfg), "--out", str(out), "--no-progress", "--trials", "1", "--folds", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mlcompare: error")]
    assert err == ["mlcompare: error: mlcompare tune does not cross-validate over [crossval] benchmark 'cfp_fp'; tune on "
                   "a comparison without [crossval], then run the tuned settings with it"]
    assert not out.exists()
