"""`mlcompare tune` with several workers on one study: a real PostgreSQL server, journal files and a real
Redis, killed workers, exact budgets."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from mlcompare.cli import main
from mlcompare.config import comparison as config
from mlcompare.errors import UserError
from mlcompare.tune import budget, tuning
from mlcompare.tune import storage as study_storage
from mlcompare.tune import study as tune_study
from tests.tuning.test_tuning import STEPS, TUNE

ROOT = Path(__file__).resolve().parents[2]
FAST = ["--set", "tuning.heartbeat=1"]  # a lost worker's trial is rerun after 3 s


def _comparison(tmp_path, trials=2):
    path = tmp_path / "t.toml"
    path.write_text(TUNE.replace("trials = 2", f"trials = {trials}"))
    return path


def _trials(run):
    return pd.read_csv(run / "tuning" / "trials.csv")


def _storage(url):
    return study_storage.open_storage(url, heartbeat=1)


def test_one_worker_on_postgresql_is_todays_sqlite_run(tmp_path, postgres_url):
    path = _comparison(tmp_path)
    assert main(["tune", str(path), "--out", str(tmp_path / "lite"), *STEPS]) == 0
    secret = postgres_url.replace("postgres@", "postgres:s3cret@")  # trust authentication: the password is unused
    assert main(["tune", str(path), "--out", str(tmp_path / "pg"), "--storage", secret, *STEPS]) == 0
    lite, pg = _trials(tmp_path / "lite"), _trials(tmp_path / "pg")
    pd.testing.assert_frame_equal(lite.drop(columns="seconds"), pg.drop(columns="seconds"))
    results = [pd.read_csv(tmp_path / r / "results.csv").set_index("method").map_at_r for r in ("lite", "pg")]
    pd.testing.assert_series_equal(*results)
    recorded = json.loads((tmp_path / "pg" / "tuning" / "storage.json").read_text())
    assert "s3cret" not in recorded["url"] and recorded["study"] == "pg" and recorded["url"].startswith("postgresql+psycopg://postgres@/")
    assert not (tmp_path / "pg" / "tuning" / "study.db").exists()
    assert "1 worker on 1 host" in (tmp_path / "pg" / "report.md").read_text()


def test_two_local_workers_share_one_study_and_the_budget_is_exact(tmp_path, shared_url):
    path = _comparison(tmp_path, trials=3)
    run = tmp_path / "run"
    assert main(["tune", str(path), "--out", str(run), "--storage", shared_url, "--jobs", "2", *STEPS]) == 0
    trials = _trials(run)
    assert trials.groupby("method").trial.apply(sorted).to_dict() == {"softmax": [0, 1, 2], "triplet-bh": [0, 1, 2]}
    assert (trials.state == "complete").all() and (trials.steps == 2 * 3).all()
    assert set(trials.worker) <= {"w0", "w1"} and trials.host.nunique() == 1
    for method in ("softmax", "triplet-bh"):  # in the study itself: three trials, none left running or waiting
        study = optuna.load_study(study_name=f"run/{method}", storage=_storage(shared_url))
        assert sorted(t.state.name for t in study.get_trials()) == ["COMPLETE"] * 3
    workers = trials.worker.nunique()
    assert f"{workers} worker{'s' if workers > 1 else ''} on 1 host" in (run / "report.md").read_text()
    recorded = json.loads((run / "tuning" / "storage.json").read_text())
    assert recorded == {"url": study_storage.redact(study_storage.normalise(shared_url)), "study": "run"}
    assert not (run / "tuning" / "study.db").exists()
    # a worker joining by the run directory opens the recorded storage, finds every budget spent, runs nothing
    assert tuning.join(config.apply_overrides(config.load(str(path)), steps=3), run) == 0


@pytest.mark.parametrize("shared_url", ["postgresql", "journal"], indirect=True)  # a journal: our own heartbeat
def test_a_worker_killed_mid_trial_is_rerun_with_the_same_parameters(tmp_path, shared_url):
    path = _comparison(tmp_path, trials=3)
    run = tmp_path / "a"
    command = [sys.executable, "-m", "mlcompare", "tune", str(path), "--out", str(run), "--storage", shared_url,
               "--study", "s", *STEPS, *FAST]
    storage = _storage(shared_url)
    # a trial counts as running once all its parameters are chosen: a kill between two suggestions would
    # leave a partial setting, which its rerun completes by sampling (milliseconds, against seconds of training)
    dims = {m: set(space.dims) for m, space in tuning.check_search(config.load(str(path))).items()}

    def running():
        try:
            return [(m, t) for m in ("softmax", "triplet-bh") for t in optuna.load_study(study_name=f"s/{m}", storage=storage)
                    .get_trials() if t.state.name == "RUNNING" and set(t.params) == dims[m]]
        except KeyError:  # not created yet
            return []

    victim = None
    for attempt in range(3):  # a trial that ends between seeing it and the kill: start the worker again
        worker = subprocess.Popen(command + (["--resume"] if attempt else []), cwd=ROOT,
                                  env=os.environ | {"OMP_NUM_THREADS": "1"},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while not running() and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
        lost = running()  # the worker is dead: a trial still running is the one it was killed in
        if lost:
            method, victim = lost[0]
            break
    assert victim is not None, "the worker was never killed mid-trial"
    # another worker (this process) resumes the tune: the lost trial is rerun, then everything else
    assert main(["tune", str(path), "--out", str(run), "--storage", shared_url, "--study", "s", "--resume",
                 *STEPS, *FAST]) == 0
    study = optuna.load_study(study_name=f"s/{method}", storage=storage)
    lost = next(t for t in study.get_trials() if t.number == victim.number)
    retry = next(t for t in study.get_trials() if t.system_attrs.get("retry_history") == [victim.number])
    assert lost.state.name == "FAIL" and retry.state.name == "COMPLETE" and retry.params == victim.params
    trials = _trials(run)
    assert trials.groupby("method").trial.apply(sorted).to_dict() == {"softmax": [0, 1, 2], "triplet-bh": [0, 1, 2]}
    assert (trials.state == "complete").all()
    row = trials[(trials.method == method) & (trials.trial == retry.user_attrs["index"])].iloc[0]
    assert json.loads(row.params) == victim.params
    assert {"softmax-tuned", "triplet-bh-tuned"} <= set(pd.read_csv(run / "results.csv").method)


def test_concurrent_starts_create_the_studies_once(tmp_path, shared_url):
    cfg = config.load(str(_comparison(tmp_path)))
    first = {m.name: {"lr": 1e-3} for m in cfg.methods}
    fp = {"train.steps": 3}
    barrier, created, errors = threading.Barrier(4), [], []

    def start():
        try:
            barrier.wait()
            storage = _storage(shared_url)  # a fresh database: the tables too are created concurrently
            created.append(tune_study.create_once(storage, "t", fp, first, pruner=tuning.pruner(cfg))[1])
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(repr(err))

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(created) == [False, False, False, True]
    summaries = optuna.get_all_study_summaries(_storage(shared_url))
    assert sorted(s.study_name for s in summaries) == ["t", "t/softmax", "t/triplet-bh"]
    for name in ("t/softmax", "t/triplet-bh"):  # the first trial enqueued once
        assert [t.state.name for t in optuna.load_study(study_name=name, storage=_storage(shared_url)).get_trials()] == ["WAITING"]


def test_a_worker_with_another_comparison_or_data_is_refused(tmp_path, capsys):
    path = _comparison(tmp_path)
    cfg = config.apply_overrides(config.load(str(path)), steps=3)
    run = tmp_path / "run"
    (run / "tuning").mkdir(parents=True)
    url = study_storage.default_url(run / "tuning")
    from mlcompare.run import runner

    train_set, _, _ = runner.prepare_data(cfg)
    tune_study.create_once(_storage(url), "run", tune_study.fingerprint(cfg, train_set),
                           {m.name: {} for m in cfg.methods}, pruner=tuning.pruner(cfg))
    study_storage.record(run / "tuning", url, "run")
    assert main(["tune", str(path), "--join", str(run), "--steps", "3", "--set", "train.lr=0.002", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "train.lr: 0.001 in the study, 0.002 here" in err
    other = train_set.subset(train_set.labels.argsort()[:-1], relabel=False)  # one image fewer
    with pytest.raises(UserError, match=f"training data images: {len(train_set)} in the study, {len(train_set) - 1} here"):
        tune_study.join(_storage(url), "run", tune_study.fingerprint(cfg, other), [m.name for m in cfg.methods],
                        pruner=tuning.pruner(cfg))
    with pytest.raises(UserError, match="study 'nope' does not exist"):
        tune_study.join(_storage(url), "nope", {}, ["softmax"], pruner=tuning.pruner(cfg))


class _T:
    """A stand-in FrozenTrial: number, state, user and system attributes (what the budget reads)."""

    def __init__(self, number, state, steps=None, retry_of=None, over=False):
        self.number, self.state = number, optuna.trial.TrialState[state]
        self.user_attrs = ({} if steps is None else {"steps": steps}) | ({budget.OVER_BUDGET: True} if over else {})
        self.system_attrs = {"retry_history": [retry_of]} if retry_of is not None else {}


def test_the_budget_in_steps_counts_what_trials_spent_and_what_running_ones_may():
    b = budget.Budget(total=30, full=10, unit="steps")
    trials = [_T(0, "COMPLETE", 10), _T(1, "PRUNED", 3), _T(2, "FAIL"), _T(3, "RUNNING"), _T(4, "FAIL", retry_of=None, over=True)]
    # 10 + 3 + 10 (failed: a full trial) + 10 (running: may still spend a full trial) = 33 > 30 - 10
    assert budget.spent(b, trials) == 33 and not budget.has_room(b, trials)
    assert budget.index(b, trials, trials[3]) is None  # 23 before it + 10 > 30: it was refused its place
    assert budget.index(b, trials[:2] + trials[3:4], trials[3]) == 2  # 13 + 10 <= 30: index 2
    lost_and_retried = [_T(0, "COMPLETE", 10), _T(1, "FAIL"), _T(2, "RUNNING", retry_of=1)]
    assert budget.index(b, lost_and_retried, lost_and_retried[2]) == 1  # the retry holds the lost trial's place
    assert budget.spent(b, lost_and_retried) == 20  # the lost trial costs nothing once retried
    counts = budget.Budget(total=2, full=1, unit="trials")
    assert budget.has_room(counts, [_T(0, "PRUNED", 3)]) and not budget.has_room(counts, [_T(0, "PRUNED", 3), _T(1, "RUNNING")])


def test_multifidelity_pruning_spends_at_most_each_methods_steps(tmp_path):
    path = _comparison(tmp_path, trials=3)
    options = ["--set", "tuning.multifidelity=halving", "--set", "tuning.eval_every=1"]
    assert main(["tune", str(path), "--out", str(tmp_path / "run"), *STEPS, *options]) == 0
    trials = _trials(tmp_path / "run")
    storage = _storage(study_storage.default_url(tmp_path / "run" / "tuning"))
    full, total = 2 * 3, 3 * 2 * 3  # folds x steps; trials x folds x steps
    for method, group in trials.groupby("method"):
        study = optuna.load_study(study_name=method, storage=storage)
        for t in study.get_trials():  # the steps a trial records are the last step it reported
            row = group[group.trial == t.user_attrs["index"]].iloc[0]
            assert row.steps == max(t.intermediate_values) and row.state == t.state.name.lower().replace("fail", "failed")
            assert (row.steps == full) == (row.state == "complete")
        assert total - full < group.steps.sum() <= total  # no room was left for one more full trial
        assert list(group.trial) == list(range(len(group)))
    report = (tmp_path / "run" / "report.md").read_text()
    assert "training steps" in report
