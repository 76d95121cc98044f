"""The lock a run holds on its run directory: ``RUN/.lock``, so two runs never write into one folder.

Two ``mlcompare run`` (or ``tune``) with the same ``--out`` would otherwise both succeed, the second
erasing the first's rows and orphaning its checkpoints. The lock is an exclusive ``flock`` on
``RUN/.lock`` held for the whole run; the file says who holds it (pid, host, start time) for the
one-line refusal. The kernel drops a ``flock`` when its process dies, however it dies, so a lock
left by a killed run is stale exactly when nobody holds the ``flock``: it is taken over (and, on
this host, its pid is no longer alive). A finished run removes the file; one that stops early (an
error, Ctrl-C) has it removed when the command ends (:func:`release_since`, called by the CLI), so a
later ``--resume`` from the same Python process finds the folder free.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from mlcompare.errors import UserError

NAME = ".lock"
_HELD: list["RunLock"] = []  # this process's locks, oldest first, for release_since


def _describe(path: Path, wait: float = 2.0) -> str:
    # The holder writes its description just after taking the flock, so a refusal that comes in
    # between finds the file empty: read again for a moment before calling it unreadable.
    deadline = time.monotonic() + wait
    while True:
        try:
            holder = json.loads(path.read_text())
            return f"pid {holder['pid']} on {holder['host']}, started {holder['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return "a process whose lock file is unreadable"
            time.sleep(0.05)


def holder(run: Path) -> str | None:
    """Who is running in ``run`` now (``pid N on HOST, started T``), or None when nobody is."""
    path = run / NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    finally:
        os.close(fd)  # closing drops a shared flock we may have taken
    return None


class RunLock:
    """An exclusive lock on ``run``; :meth:`release` (or the process's death) gives it up."""

    def __init__(self, run: Path) -> None:
        self.path = run / NAME
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UserError(f"run directory '{run}' is in use by another run ({_describe(self.path)}); "
                                "wait for it to finish, or give another --out") from None
            try:  # the file may have been removed (a clean exit) between our open and our flock: lock the new one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd: int | None = fd
        _HELD.append(self)
        os.ftruncate(fd, 0)  # a stale holder's description, if any, is replaced by ours
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # before unlocking: a waiting process then locks a new file
        finally:
            os.close(self.fd)
            self.fd = None
            _HELD.remove(self)


def held() -> int:
    """How many locks this process holds now: a mark for :func:`release_since`."""
    return len(_HELD)


def release_since(mark: int) -> None:
    """Release the locks taken since ``mark`` (a command that ended early), not older ones."""
    for lock in _HELD[mark:]:
        lock.release()
