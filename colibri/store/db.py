"""The engine, schema migrations applied on open, and sessions with errors mapped to StoreError.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout; any SQLAlchemy URL
works (PostgreSQL is tested).  Migrations run automatically when colibri opens the store, under
a lock (a lock file beside an SQLite database, an advisory lock on PostgreSQL), after a backup
copy of an existing SQLite database.  A database migrated by a newer colibri is refused.
"""

import contextlib
import fcntl
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import Connection, create_engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError

from colibri.errors import ConfigError, SchemaTooNew, StateConflict, StoreError
from colibri.store import walcheckpoint
from colibri.store.clock import DatabaseClock
from colibri.store.migrations import head

if TYPE_CHECKING:
    from sqlmodel import Session

# SQLModel (and with it SQLAlchemy's ORM, ~100 ms of imports) is imported by the first session, so
# a read that needs only a connection (``Store.connect``: ``list-tenants``) never loads it.

_PG_MIGRATION_LOCK = 0x636F6C6962  # "colib": the advisory-lock key for migrations


def make_engine(
    url: str, timeout: float = 5.0, idle_in_transaction: float | None = None, autocheckpoint: int | None = None
) -> Engine:
    """Create the engine for ``url``; for SQLite, create its directory and set the pragmas
    (``autocheckpoint``: its connections' ``wal_autocheckpoint``, None: SQLite's default).

    A URL SQLAlchemy cannot read, or whose dialect or driver is not installed, is a ConfigError
    that says what works (nothing is connected yet: this is the operator's database_url)."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(url, parsed.database, timeout, autocheckpoint)
        args = _pg_connect_args(parsed, timeout, idle_in_transaction)
        return create_engine(url, pool_pre_ping=True, connect_args=args)
    except (ArgumentError, ImportError) as exc:
        scheme = url.split(":", 1)[0][:40] if "://" in url else "?"
        why = f"the driver is not installed ({exc})" if isinstance(exc, ImportError) else "no such dialect or driver"
        if isinstance(exc, ArgumentError) and not isinstance(exc, NoSuchModuleError):
            why = "not a database URL"
        raise ConfigError(
            f"invalid setting database_url ({scheme}://...): {why}; colibri supports sqlite:///PATH and "
            "postgresql+psycopg://USER@HOST/DB (install the postgres extra)"
        ) from None


def _pg_connect_args(parsed: Any, timeout: float, idle_in_transaction: float | None = None) -> dict[str, Any]:
    if parsed.get_backend_name() != "postgresql":
        return {}
    options = [f"-c tcp_{name}={value}" for name, value in KEEPALIVES.items() if name != "keepalives"]
    if idle_in_transaction is not None:
        # A daemon frozen (SIGSTOP) in the middle of a transaction keeps its row locks while the
        # kernel still answers keepalives; the server ends such a session after this long, so the
        # other hosts can declare that host lost (the daemon's transactions take milliseconds).
        options.append(f"-c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}")
    return {
        "connect_timeout": max(1, int(timeout)),
        # A host whose link is cut (a pulled cable sends no FIN) must lose its connections, and the
        # row locks an unfinished transaction of theirs holds, in seconds, not after the kernel's
        # two hours: keepalives on both ends (libpq's, and the server's for this session).  Other
        # hosts' daemons would otherwise wait on those locks when they declare the host lost.
        **KEEPALIVES,
        "tcp_user_timeout": 5000,  # ms: data unacknowledged this long (a pulled cable) drops the connection
        "options": " ".join(options),
    }


KEEPALIVES = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
"""A silent peer is dropped after about 5 + 3 x 2 = 11 seconds."""


def _sqlite_engine(url: str, database: str | None, timeout: float, autocheckpoint: int | None = None) -> Engine:
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as exc:
            raise StoreError(f"cannot create the database directory {folder}: {exc.strerror}") from None
    engine = create_engine(url, connect_args={"timeout": timeout, "check_same_thread": False})
    busy_ms = int(timeout * 1000)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if database and database != ":memory:":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        if autocheckpoint is not None:
            cursor.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint)}")
        cursor.close()

    return engine


def describe_error(exc: SQLAlchemyError, url: str) -> str:
    """One line about a database error; never the SQL statement or its parameters."""
    orig = getattr(exc, "orig", None)
    detail = str(orig if orig is not None else exc).strip().splitlines()[0] if str(orig or exc) else ""
    where = _where(url)
    if "database is locked" in detail:
        return f"the database {where} is locked by another process; try again"
    if "unable to open database file" in detail:
        return f"cannot open the database {where}: check that the directory exists and is writable"
    if "readonly database" in detail:
        return f"the database {where} is read-only: check its permissions"
    return f"database error ({where}): {detail}"


def _where(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or ":memory:"
    return parsed.render_as_string(hide_password=True)


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Turn SQLAlchemy/DBAPI errors into StoreError with a safe one-line message."""
    try:
        yield
    except (OperationalError, DBAPIError) as exc:
        raise StoreError(describe_error(exc, url)) from None
    except SQLAlchemyError as exc:
        orm = sys.modules.get("sqlalchemy.orm.exc")  # loaded with the ORM only (see above)
        if orm is not None and isinstance(exc, orm.StaleDataError):
            # a fenced update matched 0 rows: another claim (on any host) superseded the one read
            raise StateConflict("the task was claimed again since it was read (its fence moved on)") from None
        raise StoreError(describe_error(exc, url)) from None


def current_revision(conn: Connection) -> str | None:
    """The schema revision recorded in the database, or None for an empty database."""
    try:
        row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    except (OperationalError, DBAPIError) as exc:
        message = str(getattr(exc, "orig", exc))
        if "no such table" in message or "does not exist" in message:
            conn.rollback()
            return None
        raise
    return None if row is None else str(row[0])


def migrate(engine: Engine, url: str) -> str | None:
    """Bring the schema to HEAD.  Returns the revision found before, or None if nothing was done.

    The fast path (schema already at HEAD) imports no Alembic at all: startup time matters.
    """
    with translate_errors(url), engine.connect() as conn:
        found = current_revision(conn)
        conn.rollback()
    if found == head():
        return None
    _check_known(found)
    with translate_errors(url), _migration_lock(engine, url) as conn:
        found = current_revision(conn)
        if found == head():
            return None
        _check_known(found)
        if found is not None:
            _backup_sqlite(url, found)
        _run_alembic(conn)
        conn.commit()
    return found or "empty"


def _check_known(found: str | None) -> None:
    if found is None:
        return
    from colibri.store.migrations.history import known_revisions

    if found not in known_revisions():
        raise SchemaTooNew(
            f"the database schema ({found}) is newer than this colibri knows (head {head()}); "
            "upgrade colibri, or point it at another database"
        )


@contextlib.contextmanager
def _migration_lock(engine: Engine, url: str) -> Iterator[Connection]:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        lock_path = Path(f"{parsed.database}.migrate.lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            with engine.connect() as conn:
                yield conn
        return
    with engine.connect() as conn:
        if parsed.get_backend_name() != "postgresql":
            yield conn
            return
        # a session lock, not a transaction's: reading an empty database's revision fails and is
        # rolled back (current_revision), which would let a transaction lock go before the migration
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        conn.commit()
        try:
            yield conn
        finally:
            try:
                conn.rollback()
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
                conn.commit()
            except SQLAlchemyError:
                conn.invalidate()  # closed, never pooled: the server lets the lock go with it


def _backup_sqlite(url: str, revision: str) -> None:
    """Copy an SQLite database aside before migrating it, so a failed upgrade loses nothing."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return
    source = sqlite3.connect(parsed.database)
    target = sqlite3.connect(f"{parsed.database}.before-{revision}")
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _run_alembic(conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


def open_engine(
    url: str, timeout: float = 5.0, idle_in_transaction: float | None = None, autocheckpoint: int | None = None
) -> Engine:
    """Create the engine and migrate the schema: what every command does first."""
    engine = make_engine(url, timeout, idle_in_transaction, autocheckpoint)
    try:
        migrate(engine, url)
    except BaseException:
        engine.dispose()
        raise
    return engine


@contextlib.contextmanager
def session_scope(engine: Engine, url: str) -> Iterator["Session"]:
    """A session that commits on success, rolls back on error, and maps DB errors to StoreError."""
    from sqlmodel import Session

    with translate_errors(url), Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


class Store:
    """An opened, migrated store; services open short sessions from it."""

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        idle_in_transaction: float | None = None,
        *,
        wal_checkpoints: float | None = None,
    ) -> None:
        """``wal_checkpoints``: on an SQLite file, checkpoint its WAL from a thread every this many
        seconds instead of in a commit (the daemon: store/walcheckpoint.py)."""
        self.url = url
        database = _sqlite_file(url) if wal_checkpoints else None
        backstop = walcheckpoint.BACKSTOP_PAGES if database else None
        self.engine = open_engine(url, timeout, idle_in_transaction, backstop)
        self.checkpointer: walcheckpoint.WalCheckpointer | None = None
        if database and wal_checkpoints:
            self.checkpointer = walcheckpoint.WalCheckpointer(database, wal_checkpoints, timeout)
            self.checkpointer.start()
        # leases are written and judged on the database's clock, one for every host (review R3);
        # a unit test may put its own clock here
        self.clock: Callable[[], float] = DatabaseClock(self.engine)

    def sync_clock(self, max_age: float = 0.0) -> None:
        """Read the database's clock again (colibri/store/clock.py) unless read ``max_age`` seconds
        ago; call it on a thread that may wait on the database (the daemon's database thread)."""
        if isinstance(self.clock, DatabaseClock):
            self.clock.sync(max_age)

    def session(self) -> contextlib.AbstractContextManager["Session"]:
        return session_scope(self.engine, self.url)

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for a read (no ORM: see above), with DB errors mapped to StoreError."""
        with translate_errors(self.url), self.engine.connect() as conn:
            yield conn

    def check(self) -> None:
        """Raise StoreError unless a trivial query works (for health checks)."""
        with translate_errors(self.url), self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.stop()
            self.checkpointer = None
        self.engine.dispose()


def _sqlite_file(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return str(parsed.database)
