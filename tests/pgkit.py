"""A throwaway PostgreSQL 15 for the event-log tests: initdb in a temp dir, a unix socket only, gone after.

PostgreSQL refuses to run as root, so as root the cluster belongs to an unprivileged system user
(`pgtest`, created when missing) and its commands run as that user. The directory is made with
`tempfile.mkdtemp` under /tmp rather than under pytest's tmp_path: pytest's base folder is 0700 and
owned by root, which the cluster's user could not traverse.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("ARTWORK_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "pgtest"  # the system user that owns the cluster when the tests run as root


def missing() -> str | None:
    """Why no PostgreSQL can be started here, or None."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        return (f"PostgreSQL 15 binaries not found in {PG_BIN} (install Debian's postgresql package, as .ci/run "
                f"does, or point $ARTWORK_PG_BIN at them)")
    if os.geteuid() == 0 and shutil.which("useradd") is None:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root without useradd: cannot create the unprivileged user {PG_USER!r} to run PostgreSQL"
    return None


def _owner() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as, or None to run it as ourselves (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(PG_USER)
    return pw.pw_uid, pw.pw_gid


class PgCluster:
    """One PostgreSQL server on a unix socket in its own temp dir; `database()` hands out fresh databases."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="artwork-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.log = self.root / "server.log"
        self.owner = _owner()
        self._names = itertools.count()

    def _run(self, *cmd: str) -> None:
        kw = {} if self.owner is None else {"user": self.owner[0], "group": self.owner[1], "extra_groups": []}
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=self.root, **kw)
        if res.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}{res.stderr}{log}")

    def start(self) -> PgCluster:
        self.sock.mkdir()
        if self.owner is not None:
            for p in (self.root, self.sock):
                os.chown(p, *self.owner)
        # trust on the socket only (no TCP listener at all); --no-sync and fsync=off: the tests
        # kill clients, never the machine, so skipping fsync loses nothing they check.
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--locale=C", "--no-sync", "--no-instructions")
        opts = (f"-c listen_addresses='' -c unix_socket_directories={self.sock} -c fsync=off "
                f"-c full_page_writes=off -c shared_buffers=32MB -c max_connections=60")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60",
                  "start")
        return self

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        """A URL to `dbname` over the socket (a password, if given, is ignored by trust auth)."""
        auth = "postgres" + (f":{password}" if password else "")
        return f"postgresql://{auth}@/{dbname}?host={self.sock}"

    def database(self, password: str | None = None) -> str:
        """A new empty database; returns its URL (with `password` in it, if given)."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name, password)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One server for the whole session (skips when the binaries are absent)."""
    why = missing()
    if why:
        pytest.skip(why)
    cluster = PgCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> str:
    """A fresh, empty database of the session's server."""
    return pg_cluster.database()


@pytest.fixture(params=["sqlite", "postgresql"])
def events_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's event log goes, once per backend: a SQLite file, or a fresh PostgreSQL
    database (the server starts only for these). Import it beside `pg_url`, which it uses."""
    if request.param == "sqlite":
        return str(tmp_path / "log.events.db")
    return request.getfixturevalue("pg_url")
