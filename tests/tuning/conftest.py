"""A real PostgreSQL server for the distributed-tuning tests: started once, on a Unix socket, stopped at the end.

Debian's ``postgresql`` package (``.ci/run`` installs it where it can) provides ``initdb``,
``pg_ctl`` and ``postgres``; PostgreSQL refuses to run as root, so as root the server runs as the
package's ``postgres`` user. Where no server can start, the tests that need one skip with the reason.
"""
import glob
import os
import shutil
import subprocess
import tempfile
import uuid

import pytest


def _binaries() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return os.path.dirname(versions[-1]) if versions else None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres_server():
    """(socket folder, port) of a fresh PostgreSQL cluster (trust authentication, Unix socket only)."""
    try:
        import psycopg  # noqa: F401  (the distributed extra)
    except ImportError:
        pytest.skip("psycopg is not installed: pip install mlcompare[distributed]")
    bin_dir = _binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL cannot start as root")
    root = tempfile.mkdtemp(prefix="mlcompare-pg-")  # short: a Unix socket path is at most ~100 bytes
    if os.geteuid() == 0:
        try:
            shutil.chown(root, user="postgres")
        except (LookupError, PermissionError) as err:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"as root PostgreSQL runs as the 'postgres' user, which is not usable here: {err}")
    data, port = os.path.join(root, "data"), str(15432 + os.getpid() % 1000)
    pg_ctl = os.path.join(bin_dir, "pg_ctl")
    started = False
    try:
        init = subprocess.run(_as_server_user([os.path.join(bin_dir, "initdb"), "-D", data, "-A", "trust", "-U", "postgres"]),
                              capture_output=True, text=True)
        if init.returncode:
            pytest.skip(f"initdb failed: {init.stderr.strip()[-300:]}")
        options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off"
        start = subprocess.run(_as_server_user([pg_ctl, "-D", data, "-o", options, "-l", os.path.join(root, "log"),
                                                "-w", "-t", "60", "start"]), capture_output=True, text=True)
        started = start.returncode == 0
        if not started:
            log = open(os.path.join(root, "log")).read()[-300:] if os.path.exists(os.path.join(root, "log")) else ""
            pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-200:]} {log}")
        yield root, port
    finally:
        if started:
            subprocess.run(_as_server_user([pg_ctl, "-D", data, "-m", "immediate", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A storage URL of a new, empty database on the test server."""
    import psycopg

    root, port = postgres_server
    name = f"tune_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(host=root, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@/{name}?host={root}&port={port}"
