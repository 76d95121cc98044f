"""Our heartbeat on Optuna's journals (which have none): stale trials failed once and retried with their parameters."""
import socket
import sys
import threading
import time
from datetime import datetime
from types import SimpleNamespace

import optuna
import pytest

from mlcompare.errors import UserError
from mlcompare.tune import budget as tune_budget
from mlcompare.tune import heartbeat as trial_heartbeat
from mlcompare.tune import storage as study_storage
from mlcompare.tune.heartbeat import STAMP


def _journal(tmp_path):
    return study_storage.open_storage(f"journal://{tmp_path / 'tune.log'}", heartbeat=1)


def _running(study, lr):
    """A trial of ``study`` running with the setting ``lr``."""
    study.enqueue_trial({"lr": lr})
    trial = study.ask()
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return trial


def test_stale_means_no_stamp_nor_start_within_three_intervals():
    def trial(stamp=None, start=None):
        return SimpleNamespace(system_attrs={} if stamp is None else {STAMP: stamp},
                               datetime_start=None if start is None else datetime.fromtimestamp(start))

    now, interval = 1000.0, 10
    assert not trial_heartbeat.stale(trial(stamp=970.0, start=900.0), now=now, interval=interval)  # 30 s: not yet
    assert trial_heartbeat.stale(trial(stamp=969.0, start=900.0), now=now, interval=interval)  # 31 s
    assert not trial_heartbeat.stale(trial(start=990.0), now=now, interval=interval)  # no beat yet, just started
    assert trial_heartbeat.stale(trial(start=960.0), now=now, interval=interval)  # lost before its first beat
    assert not trial_heartbeat.stale(trial(), now=now, interval=interval)


def test_a_journal_trial_with_an_old_stamp_is_failed_once_and_retried_with_its_parameters(tmp_path):
    storage = _journal(tmp_path)
    assert not trial_heartbeat.native(storage)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    lost, alive, starting = (_running(study, lr) for lr in (0.01, 0.02, 0.03))
    now = time.time()
    storage.set_trial_system_attr(lost._trial_id, STAMP, now - 3.5)  # heartbeat 1 s: silent for 3.5 intervals
    storage.set_trial_system_attr(alive._trial_id, STAMP, now - 1.5)
    # `starting` has no stamp yet: it started just now
    trial_heartbeat.fail_stale(study, storage, interval=1)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "RUNNING", "RUNNING", "WAITING"]
    retry = trials[3]
    assert retry.params == {"lr": 0.01} and retry.distributions == trials[0].distributions
    assert retry.system_attrs["failed_trial"] == 0 and retry.system_attrs["retry_history"] == [0]  # Optuna's retry
    assert STAMP in trials[0].system_attrs and STAMP not in retry.system_attrs  # it beats for itself, once it runs
    # another worker on the same file (its own clock read later) finds nothing more to fail
    other = _journal(tmp_path)
    trial_heartbeat.fail_stale(optuna.load_study(study_name="s", storage=other), other, interval=1)
    assert len(study.get_trials()) == 4
    # the budget: the lost trial costs nothing, its retry holds its place (index 0)
    budget = tune_budget.Budget(total=3, full=1, unit="trials")
    assert [t.number for t in tune_budget.counted(trials)] == [1, 2, 3]
    assert tune_budget.index(budget, trials, retry) == 0 and not tune_budget.has_room(budget, trials[:3])
    # run by the next ask, the retry beats for itself
    again = study.ask()
    assert again.number == 3 and again.params == {"lr": 0.01}
    trial_heartbeat.beat(storage, again._trial_id)
    assert time.time() - storage.get_trial(again._trial_id).system_attrs[STAMP] < 1


def test_workers_seeing_the_same_lost_trial_at_once_retry_it_once(tmp_path):
    storage = _journal(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s")
    lost = _running(study, 0.01)
    storage.set_trial_system_attr(lost._trial_id, STAMP, time.time() - 10)
    storages = [_journal(tmp_path) for _ in range(4)]
    workers = [(optuna.load_study(study_name="s", storage=s), s) for s in storages]
    barrier, errors = threading.Barrier(len(workers)), []

    def check(s, storage):
        try:
            barrier.wait()
            trial_heartbeat.fail_stale(s, storage, interval=1)
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(repr(err))

    threads = [threading.Thread(target=check, args=w) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]


def test_a_worker_leaving_its_trial_on_a_journal_enqueues_it_again(tmp_path):
    storage = _journal(tmp_path)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = _running(study, 0.05)
    with trial_heartbeat.beating(storage, trial._trial_id, 1):
        assert STAMP in storage.get_trial(trial._trial_id).system_attrs  # the first beat is at once
        trial_heartbeat.abandon(study, storage, trial._trial_id)
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"] and trials[1].params == {"lr": 0.05}
    trial_heartbeat.abandon(study, storage, trial._trial_id)  # already failed: nothing more
    assert len(study.get_trials()) == 2


def test_journal_urls_are_recorded_absolute_and_redis_without_its_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study_storage.normalise("journal://runs/tune.log") == f"journal://{tmp_path}/runs/tune.log"
    assert study_storage.redact("rediss://me:s3cret@db:6380/2") == "rediss://me@db:6380/2"
    with pytest.raises(UserError, match=r"the folder .*/nowhere does not exist"):
        study_storage.open_storage("journal://nowhere/tune.log", heartbeat=1)
    with pytest.raises(UserError, match="names no file"):
        study_storage.open_storage("journal:///", heartbeat=1)
    monkeypatch.setitem(sys.modules, "redis", None)  # as without the distributed extra
    with pytest.raises(UserError, match=r"^--storage redis://db:6379/0 needs the redis package: pip install "
                                        r"mlcompare\[distributed\]$"):
        study_storage.open_storage("redis://:s3cret@db:6379/0", heartbeat=1)


def test_an_unreachable_redis_is_one_line():
    pytest.importorskip("redis", reason="the redis package is not installed: pip install mlcompare[distributed]")
    with socket.socket() as s:  # a port nothing listens on once it is closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=r"^--storage redis://127.0.0.1:\d+/0: cannot reach Redis .*; check the URL"):
        study_storage.open_storage(f"redis://:s3cret@127.0.0.1:{port}/0", heartbeat=1)
