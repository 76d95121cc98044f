"""Where ``mlcompare tune`` keeps its Optuna studies: a URL, opened with a heartbeat, recorded without its password.

SQLite inside the run directory is the default (one machine); any SQLAlchemy URL Optuna's
``RDBStorage`` takes works too, e.g. ``postgresql://USER@HOST/DB`` (``pip install
mlcompare[distributed]``), so that workers on several machines run trials of one study. So do
Optuna's journals: ``journal:///PATH`` (a ``JournalFileBackend`` file, on a disk every worker
mounts) and ``redis://HOST:PORT/DB`` (``JournalRedisBackend``; the distributed extra). A worker
records a heartbeat every ``heartbeat`` seconds while it runs a trial; a trial whose heartbeat is
older than three intervals belonged to a lost worker: it is failed and run again with the same
parameters (Optuna's on RDB, ours on journals: :mod:`mlcompare.tune.heartbeat`).

The run directory records the URL in ``tuning/storage.json`` with the password left out; a worker
that joins gives it through ``PGPASSWORD`` / ``~/.pgpass`` or ``--storage``.
"""
from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

from mlcompare.errors import UserError
from mlcompare.run.rundir import write_text_atomic
from mlcompare.tune.heartbeat import STALE_AFTER, retry_callback

TABLE_RACE_TRIES = 5  # attempts to open a fresh database whose tables other workers are creating at the same moment
DRIVERS = {"postgresql": "postgresql+psycopg"}  # psycopg 3 (the distributed extra), not SQLAlchemy's psycopg2 default
JOURNAL_FILE = "journal"  # journal:///PATH: Optuna's JournalFileBackend
REDIS = ("redis", "rediss")  # Optuna's JournalRedisBackend (rediss: over TLS)


def default_url(tuning_dir: Path) -> str:
    return f"sqlite:///{(tuning_dir / 'study.db').absolute()}"


def normalise(url: str) -> str:
    """``url`` with the driver mlcompare installs for its scheme (``postgresql://`` -> psycopg 3) and
    a journal file's path made absolute (what workers started elsewhere are given).

    >>> normalise("postgresql://me@db/tune")
    'postgresql+psycopg://me@db/tune'
    >>> normalise("journal:///shared/tune.log")
    'journal:///shared/tune.log'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise UserError(f"--storage '{url}' is not a URL; give e.g. postgresql://USER@HOST/DB, journal:///PATH "
                        "or sqlite:///PATH")
    if scheme == JOURNAL_FILE:
        if not rest or rest.endswith("/"):
            raise UserError(f"--storage '{url}' names no file; give journal:///SHARED/DISK/tune.log")
        return f"{JOURNAL_FILE}://{Path(rest).absolute()}"
    return f"{DRIVERS.get(scheme, scheme)}://{rest}"


def redact(url: str) -> str:
    """``url`` without its password (what the run directory records).

    >>> redact("postgresql+psycopg://me:secret@db:5432/tune")
    'postgresql+psycopg://me@db:5432/tune'
    >>> redact("redis://:secret@db:6379/0")
    'redis://db:6379/0'
    """
    from sqlalchemy.engine import URL, make_url

    if url.startswith(f"{JOURNAL_FILE}://"):  # a path: no password, and not a database URL to parse
        return url
    u = make_url(url)  # URL.set(password=None) leaves the password as it is: build the URL without it
    return URL.create(u.drivername, u.username or None, None, u.host, u.port, u.database,
                      u.query).render_as_string(hide_password=False)


def open_storage(url: str, *, heartbeat: int) -> Any:
    """Optuna's storage of ``url``: an ``RDBStorage`` with its heartbeat on and lost trials retried,
    or a ``JournalStorage`` (a journal file, Redis; :mod:`mlcompare.tune.heartbeat` beats for it);
    a missing driver is one line naming the extra that installs it."""
    import optuna
    from optuna.storages import RDBStorage

    # the heartbeat, the retry of lost trials and the Redis journal are marked experimental; we rely on them
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = normalise(url)
    if url.partition("://")[0] in (JOURNAL_FILE, *REDIS):
        return open_journal(url)
    # SQLite serialises writers: wait for the lock rather than fail when several local workers write
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    from sqlalchemy import exc

    try:
        for attempt in range(TABLE_RACE_TRIES):
            try:
                return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat,
                                  grace_period=STALE_AFTER * heartbeat, heartbeat_stale_trial_callback=retry_callback())
            except (exc.IntegrityError, exc.ProgrammingError):
                # Workers starting together on a fresh database all create Optuna's tables; all but one
                # meet the others' tables half made (measured: 3 of 4). Once they exist, opening works.
                if attempt + 1 == TABLE_RACE_TRIES:
                    raise
                time.sleep(0.2 * (attempt + 1))
    except ModuleNotFoundError as err:
        raise UserError(f"--storage {redact(url)} needs the database driver {err.name}: pip install "
                        "mlcompare[distributed] (PostgreSQL; for MySQL install a driver and use mysql+pymysql://)") from err
    except optuna.exceptions.StorageInternalError as err:
        raise UserError(f"--storage {redact(url)}: cannot open it ({err.__cause__ or err}); check the URL and that "
                        "the server runs") from err


def open_journal(url: str) -> Any:
    """Optuna's ``JournalStorage`` of a ``journal:///PATH`` file or a ``redis://`` server (reached
    now, so that a wrong address is one line before any work)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    if url.startswith(f"{JOURNAL_FILE}://"):
        path = Path(url.removeprefix(f"{JOURNAL_FILE}://"))
        if not path.parent.is_dir():
            raise UserError(f"--storage {url}: the folder {path.parent} does not exist; create it (on a disk every "
                            "worker mounts) or give another path")
        return JournalStorage(JournalFileBackend(str(path)))
    try:
        import redis
    except ModuleNotFoundError as err:
        raise UserError(f"--storage {redact(url)} needs the redis package: pip install mlcompare[distributed]") from err
    try:
        redis.Redis.from_url(url).ping()
    except (redis.exceptions.RedisError, ValueError) as err:
        raise UserError(f"--storage {redact(url)}: cannot reach Redis ({err}); check the URL and that the server "
                        "runs") from err
    return JournalStorage(JournalRedisBackend(url))


def record(tuning_dir: Path, url: str, study: str) -> None:
    """``tuning/storage.json``: where the run's studies are, for ``mlcompare tune --join`` (no password)."""
    write_text_atomic(tuning_dir / "storage.json", json.dumps({"url": redact(normalise(url)), "study": study}, indent=2))


def recorded(run_dir: Path) -> tuple[str, str]:
    """The storage URL (no password) and study name a run directory records."""
    path = run_dir / "tuning" / "storage.json"
    if not path.is_file():
        raise UserError(f"--join {run_dir}: no tuning/storage.json there; give the run directory of a "
                        "`mlcompare tune` (or a copy of its tuning/storage.json in RUN_DIR/tuning/)")
    saved = json.loads(path.read_text())
    return saved["url"], saved["study"]
