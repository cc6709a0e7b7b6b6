"""A real PostgreSQL server for the store tests, started on a private port and data directory.

The server binaries come from Debian's ``postgresql`` package (installed by tests/setup.sh).
PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user.
Each test gets a database of its own.
"""

import contextlib
import glob
import os
import pwd
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """``listen``: the addresses it listens on (127.0.0.1; the three-host rig adds its bridge's);
    ``hba``: extra pg_hba.conf lines (the rig's ``host all all 10.77.N.0/24 trust``)."""

    def __init__(self, bindir: Path, root: Path, listen: tuple[str, ...] = ("127.0.0.1",),
                 hba: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.listen = listen
        self.hba = hba
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self._head_template: str | None = None

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, "-A", "trust",
                  "--no-sync", "-E", "UTF8")  # fmt: skip
        if self.hba:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write("".join(f"{line}\n" for line in self.hba))
        options = f"-p {self.port} -k {self.root} -c listen_addresses={','.join(self.listen)} -c fsync=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "log"), "-w", "start")  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def url(self, database: str = "postgres", address: str = "127.0.0.1") -> str:
        """The SQLAlchemy URL of ``database``, reached at ``address`` (one of ``listen``)."""
        return f"postgresql+psycopg://{self.user}@{address}:{self.port}/{database}"

    def create_database(self, template: str | None = None) -> str:
        """A new, empty database (a copy of ``template`` when given), returning its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        copy = "" if template is None else f' TEMPLATE "{template}"'
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                                     autocommit=True) as conn:  # fmt: skip
                    conn.execute(f'CREATE DATABASE "{name}"{copy}')
                return self.url(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def migrated_database(self) -> str:
        """A new database already at colibri's schema HEAD: a copy of one this server migrated
        once (with ``Store``, as colibri does), so a test does not pay Alembic's DDL again."""
        if self._head_template is None:
            from colibri.store.db import Store

            url = self.create_database()
            Store(url).close()  # migrates; closing leaves no connection, as CREATE ... TEMPLATE needs
            self._head_template = url.rsplit("/", 1)[1]
        return self.create_database(self._head_template)


@pytest.fixture(name="postgres_server", scope="session")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    from tests.conftest import require

    bindir = _pg_bindir()
    require(bindir is not None, "PostgreSQL server binaries (Debian package postgresql)")
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="colibri-pg-"))
    root.chmod(0o755)
    server = PostgresServer(bindir, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="empty_db_url", params=["sqlite", "postgres"])
def empty_db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite in tmp, or a new database on the real PostgreSQL server
    (for the tests of the migrations themselves)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()


@pytest.fixture(name="sqlite_head", scope="session")
def sqlite_head_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite database this worker migrated to HEAD once (with ``Store``, as colibri does)."""
    from colibri.store.db import Store

    path = tmp_path_factory.mktemp("sqlite-head") / "head.db"
    Store(f"sqlite:///{path}").close()
    return path


@pytest.fixture(name="db_url", params=["sqlite", "postgres"])
def db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL at colibri's schema HEAD, with no rows: SQLite in tmp, or a new
    database on the real PostgreSQL server.  Each is a copy of one migrated once per worker (the
    migrations run on empty databases in tests/unit/store/test_store.py, ``empty_db_url``);
    opening it with ``Store`` finds HEAD and migrates nothing."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        source, target = sqlite3.connect(request.getfixturevalue("sqlite_head")), sqlite3.connect(path)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        return f"sqlite:///{path}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.migrated_database()
