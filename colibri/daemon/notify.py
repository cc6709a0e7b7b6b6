"""Wake-ups between the hosts of a hive on one PostgreSQL: ``LISTEN``/``NOTIFY colibri_tasks``.

After a task is queued (a submit committed, a lease given back or requeued) the daemon announces
its capability: ``NOTIFY colibri_tasks, '<capability>'``.  The payload is a capability name only,
never a tenant's data.  Every daemon listens on one dedicated connection, so PostgreSQL sees one
listener per host, never one per agent, and wakes its own waiting agents for that capability.

Two threads, each with its own psycopg connection (autocommit), neither on the daemon's database
thread:

* the sender drains the capabilities announced since its last round trip and sends them in one
  statement: a burst of submits costs one NOTIFY round trip per capability and batch (debounced by
  coalescing, with no added delay when idle);
* the listener waits for notifications and hands each capability to the event loop; its own
  daemon's notifications (same backend pid as the sender) are skipped.  A lost connection (a
  PostgreSQL restart, ``pg_terminate_backend``) is opened again with backoff, and every waiting
  agent is woken once it is back (a NOTIFY sent while it was away is lost).

A NOTIFY can be lost anyway, so the daemon also polls the queue every ``task_poll_interval``
seconds while agents wait (``Dispatcher.poll``).  On SQLite (one host) none of this runs.
"""

import logging
import random
import re
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("colibri.daemon")
CHANNEL = "colibri_tasks"
_CAPABILITY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)  # colibri.domain.validate_name's rule
MAX_PENDING = 1024  # capabilities waiting for the sender (more are dropped: the poll covers them)
BACKOFF_FIRST, BACKOFF_MAX = 0.1, 5.0
WAIT_SECONDS = 0.5  # how long the listener blocks before it looks at the stop flag


def conninfo(url: str) -> str:
    """The libpq connection string of colibri's SQLAlchemy URL (``postgresql+psycopg://...``),
    as the store's own connections get it: SQLAlchemy's psycopg dialect turns several ``host=H:P``
    query parameters (a primary and its replica, runbooks/postgres-replica.md) into libpq's
    ``host=H1,H2 port=P1,P2``.  It holds the password when the URL does: never log it."""
    from psycopg.conninfo import make_conninfo
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    _, params = PGDialect_psycopg().create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
    return make_conninfo(**{key: str(value) for key, value in params.items()})


def wanted(payload: str) -> str | None:
    """A notification's payload if it is a capability name, else None (a peer is not trusted)."""
    return payload if _CAPABILITY.fullmatch(payload) else None


class Wakeups:
    """The sender and listener threads.  ``start()``, ``announce()`` from the event loop, ``stop()``."""

    def __init__(
        self, url: str, on_capability: Callable[[str], None], on_reconnect: Callable[[], None],
        call_soon: Callable[..., Any], timeout: float = 5.0,
    ) -> None:  # fmt: skip
        self._conninfo = conninfo(url)
        self._on_capability = on_capability
        self._on_reconnect = on_reconnect
        self._call_soon = call_soon  # loop.call_soon_threadsafe
        self._timeout = max(1, int(timeout))
        self._stop = threading.Event()
        self._pending: set[str] = set()
        self._ready = threading.Condition()
        self._sender_pid: int | None = None
        self.listening = False
        self.sent = 0
        self.received = 0
        self._threads = [
            threading.Thread(target=self._listen, name="colibri-listen", daemon=True),
            threading.Thread(target=self._send, name="colibri-notify", daemon=True),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, wait: float = 2.0) -> None:
        self._stop.set()
        with self._ready:
            self._ready.notify_all()
        for thread in self._threads:
            thread.join(wait)

    def announce(self, capability: str) -> None:
        """A task of this capability is queued: tell the other hosts (soon, coalesced)."""
        with self._ready:
            if len(self._pending) < MAX_PENDING:
                self._pending.add(capability)
            self._ready.notify()

    # ---- threads -----------------------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=self._timeout)

    def _backoff(self, delay: float) -> float:
        self._stop.wait(delay * (0.5 + random.random() / 2))  # noqa: S311 (jitter, not a secret)
        return min(BACKOFF_MAX, delay * 2)

    def _send(self) -> None:
        conn, delay = None, BACKOFF_FIRST
        while not self._stop.is_set():
            with self._ready:
                while not self._pending and not self._stop.is_set():
                    self._ready.wait()
                batch, self._pending = sorted(self._pending), set()
            if self._stop.is_set():
                break
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                    self._sender_pid = conn.info.backend_pid
                conn.execute("SELECT pg_notify(%s, c) FROM unnest(%s::text[]) AS c", (CHANNEL, batch))
                self.sent += len(batch)
            except Exception as exc:  # psycopg.Error, OSError: the poll covers what was not sent
                log.warning("task wake-ups: NOTIFY failed (%s); trying again", type(exc).__name__)
                with self._ready:
                    self._pending.update(batch[: MAX_PENDING - len(self._pending)])
                _close(conn)
                conn, delay = None, self._backoff(delay)
                continue
            delay = BACKOFF_FIRST
        _close(conn)

    def _listen(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            conn = None
            try:
                conn = self._connect()
                conn.execute(f"LISTEN {CHANNEL}")
                if not self.listening:
                    log.info("task wake-ups: listening on %s", CHANNEL)
                self.listening, delay = True, BACKOFF_FIRST
                self._call_soon(self._on_reconnect)  # what was sent while away is lost: look now
                while not self._stop.is_set():
                    for note in conn.notifies(timeout=WAIT_SECONDS):
                        if note.pid == self._sender_pid:
                            continue  # this daemon's own announcement: its waiters were woken already
                        capability = wanted(note.payload)
                        if capability is not None:
                            self.received += 1
                            self._call_soon(self._on_capability, capability)
            except Exception as exc:  # the connection was lost or refused: again, with backoff
                if not self._stop.is_set():
                    log.warning("task wake-ups: the listening connection failed (%s); reconnecting, the "
                                "queue is polled meanwhile", type(exc).__name__)  # fmt: skip
                self.listening = False
                delay = self._backoff(delay)
            finally:
                _close(conn)


def _close(conn: Any) -> None:
    if conn is not None:
        try:
            conn.close()
        except Exception:  # closing a broken connection: nothing more to do
            log.debug("closing a wake-up connection failed", exc_info=True)
