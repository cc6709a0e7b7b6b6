"""The database's clock: the one clock every host of a hive writes and judges leases by (review R3).

Host leases, task leases and their expiry are compared across hosts (host b declares host a lost
when a's lease ended; any daemon requeues a task whose lease ran out), so they must be written and
judged on ONE clock, not on each host's own (a host whose NTP is broken by 45 s would be declared
lost while it renews on time, or would requeue a live host's running task).  That clock is the
database server's: PostgreSQL's ``clock_timestamp()``; SQLite's ``julianday('now')``, which on
the single host SQLite serves is that host's own clock (one code path for both).

Reading the server's clock costs a round trip, too much for every claim, so the clock is read on
``sync()`` (the daemon's lease loops call it, on its database thread) and carried forward in
between on this host's monotonic clock: a step of this host's wall clock (``date -s``, an NTP
step) changes nothing, and the error is the round trip's half plus the drift of the monotonic
clock between two syncs (a few seconds apart: microseconds).  Before the first sync, and while
the server cannot be reached, the last reading is carried forward the same way.
"""

import threading
import time

from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

_NOW = {
    "postgresql": "SELECT extract(epoch FROM clock_timestamp())",
    "sqlite": "SELECT (julianday('now') - 2440587.5) * 86400.0",
}


class DatabaseClock:
    """Seconds since the epoch on the database server's clock (a callable, like ``time.time``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._query = text(_NOW.get(engine.dialect.name, "SELECT extract(epoch FROM current_timestamp)"))
        self._lock = threading.Lock()
        self._base = time.time()  # until the first sync: this host's clock
        self._mono = time.monotonic()
        self._synced = False
        self._synced_at = 0.0  # monotonic

    def __call__(self) -> float:
        with self._lock:
            return self._base + (time.monotonic() - self._mono)

    @property
    def synced(self) -> bool:
        """Has the server's clock been read at least once?"""
        return self._synced

    def sync(self, max_age: float = 0.0) -> bool:
        """Read the server's clock again unless it was read less than ``max_age`` seconds ago.
        False when the server could not be read (the last reading is carried forward)."""
        if self._synced and time.monotonic() - self._synced_at < max_age:
            return True
        try:
            with self._engine.connect() as conn:
                before = time.monotonic()
                value = conn.execute(self._query).scalar()
                after = time.monotonic()
                conn.rollback()
        except SQLAlchemyError:
            return False
        if value is None:
            return False
        with self._lock:
            self._mono = (before + after) / 2  # the server read its clock about half way through
            self._base = float(value)
            self._synced, self._synced_at = True, after
        return True
