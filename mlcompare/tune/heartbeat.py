"""A trial's heartbeat on every storage: Optuna's where the storage has one, ours where it has not.

A worker killed mid-trial (SIGKILL, a lost machine) leaves its trial RUNNING for ever; another
worker must see that it is lost, fail it, and run its parameters again, so that the budget loses
nothing (:mod:`mlcompare.tune.budget`). Optuna's ``RDBStorage`` (SQLite, PostgreSQL, MySQL) has a
heartbeat for this (``record_heartbeat``, ``fail_stale_trials`` and the retry callback it is opened
with). Optuna's ``JournalStorage`` (a journal file on a shared disk, Redis) has none: in Optuna 5.1
only ``RDBStorage`` implements ``BaseHeartbeat``, and ``fail_stale_trials`` does nothing on a
journal. For a journal this module keeps the same contract with what every storage allows:

- a beat is the worker's clock (``time.time()``, seconds since the epoch) written as the running
  trial's system attribute :data:`STAMP`;
- a RUNNING trial whose last sign of life (its latest stamp, or its start before its first beat) is
  older than :data:`STALE_AFTER` intervals is failed by the worker that sees it; the journal orders
  the writes, so a second worker failing it too is refused (``UpdateFinishedTrialError``) and the
  trial is retried once;
- the retry is Optuna's own callback, as on RDB: a WAITING copy with the same parameters and the
  ``failed_trial`` / ``retry_history`` system attributes the budget counts places by.

Which of the two runs is decided by the storage alone (:func:`native`), by the test Optuna's
``fail_stale_trials`` makes.

Clocks: RDB's heartbeat reads the database server's clock only. A journal's stamps are written by
one machine's clock and read by another's, so the workers' clocks are assumed to agree to well
within ``STALE_AFTER x heartbeat`` (30 s at the default 10 s; NTP keeps machines within
milliseconds). A reader whose clock runs ahead by more than that takes a live trial for lost (it is
run twice, and its first worker stops on telling it); one whose clock runs behind reruns lost trials later.
"""
from __future__ import annotations

import contextlib
import copy
import threading
import time
from typing import Any, Iterator

STALE_AFTER = 3  # heartbeat intervals without a beat after which a running trial is taken as lost
MAX_RETRY = 3  # runs of one trial's parameters lost to dead workers before it stays failed
STAMP = "mlcompare:heartbeat"  # system attribute: the worker's time.time() at its trial's last beat


def native(storage: Any) -> bool:
    """Whether ``storage`` has Optuna's heartbeat (``RDBStorage``) rather than needing ours (journals)."""
    from optuna.storages._heartbeat import BaseHeartbeat  # what optuna.storages.fail_stale_trials tests

    return isinstance(storage, BaseHeartbeat)


def retry_callback() -> Any:
    """Optuna's retry of a lost trial: a WAITING copy with its parameters, at most :data:`MAX_RETRY` times."""
    import optuna

    # Optuna 4.9 renamed the callback (the old name warns); the same retry with the same attributes
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    return retry(max_retry=MAX_RETRY)


def retry(study: Any, trial: Any) -> None:
    """Enqueue ``trial`` (failed, lost with its worker) again with the same parameters, as RDB's
    ``fail_stale_trials`` does with the callback :mod:`mlcompare.tune.storage` opens it with."""
    fresh = copy.copy(trial)  # the retry starts with no beat of its own: its stamp would be the lost trial's
    fresh.system_attrs = {k: v for k, v in trial.system_attrs.items() if k != STAMP}
    retry_callback()(study, fresh)


def beat(storage: Any, trial_id: int) -> None:
    """One sign of life of the running trial ``trial_id``."""
    import optuna

    if native(storage):
        storage.record_heartbeat(trial_id)
        return
    try:
        storage.set_trial_system_attr(trial_id, STAMP, time.time())
    except optuna.exceptions.UpdateFinishedTrialError:
        pass  # told (or failed by another worker) between the last beat and the end of the block


@contextlib.contextmanager
def beating(storage: Any, trial_id: int, interval: int) -> Iterator[None]:
    """Beat for ``trial_id`` now and every ``interval`` seconds until the block ends (what
    Optuna's ``optimize`` does for its own trials on RDB)."""
    beat(storage, trial_id)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            beat(storage, trial_id)

    thread = threading.Thread(target=loop, daemon=True, name=f"heartbeat-{trial_id}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def stale(trial: Any, *, now: float, interval: int) -> bool:
    """Whether the RUNNING ``trial`` has shown no sign of life for :data:`STALE_AFTER` intervals at
    ``now`` (``time.time()``): its last stamp, or its start (a worker lost before its first beat)."""
    if STAMP in trial.system_attrs:
        last = trial.system_attrs[STAMP]
    elif trial.datetime_start is not None:  # written by the same worker's clock when it took the trial
        last = trial.datetime_start.timestamp()
    else:
        return False  # never started: not this worker's to judge
    return now - last > STALE_AFTER * interval


def fail_stale(study: Any, storage: Any, *, interval: int) -> None:
    """Fail ``study``'s lost trials and enqueue their retries (``storage``: the one ``study`` was opened on)."""
    import optuna

    if native(storage):  # the storage's own heartbeat, grace period and retry callback (tune/storage.py)
        optuna.storages.fail_stale_trials(study)
        return
    now = time.time()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if not stale(trial, now=now, interval=interval):
            continue
        try:
            storage.set_trial_state_values(trial._trial_id, state=optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker failed it first (and retries it), or its worker told it just now
        retry(study, storage.get_trial(trial._trial_id))


def abandon(study: Any, storage: Any, trial_id: int) -> None:
    """Fail the trial this worker is leaving (interrupted, or a bug) and enqueue its retry, unless it
    was already told (``storage``: the one ``study`` was opened on)."""
    import optuna

    trial = storage.get_trial(trial_id)
    if trial.state == optuna.trial.TrialState.RUNNING:
        storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL)
        retry(study, storage.get_trial(trial_id))
