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

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} dbname=postgres",
                                     autocommit=True) as conn:  # fmt: skip
                    conn.execute(f'CREATE DATABASE "{name}"')
                return self.url(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


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


@pytest.fixture(name="db_url", params=["sqlite", "postgres"])
def db_url_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database URL: SQLite in tmp, or a new database on the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
