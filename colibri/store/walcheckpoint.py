"""SQLite's WAL checkpoints off the request path, for the long-lived daemon.

By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages, so one commit
in every few dozen pays for copying the log back into the database and syncing it (about 4 ms on
the 2-core VM): that commit was the p99 of a spawn decision (issue 14, bench/policy_decide.py:
4.2 ms with it, 0.6 ms without).  The daemon's store turns that off on its own connections
(``PRAGMA wal_autocheckpoint = BACKSTOP_PAGES``: only a WAL this thread let grow that far, were it
to stop, is still checkpointed by a commit) and runs a PASSIVE checkpoint from this thread instead,
on a connection of its own, every ``interval`` seconds: PASSIVE never waits on a reader or a writer
(in WAL mode they go on while it copies), so no request waits on it.  A command (the CLI) keeps
SQLite's default; the last connection to close checkpoints and removes the WAL either way.
"""

import contextlib
import logging
import sqlite3
import threading

log = logging.getLogger("colibri.store")

BACKSTOP_PAGES = 16384
"""The daemon's connections checkpoint in a commit only past this many WAL pages (64 MiB of 4 KiB
pages; SQLite's default is 1,000), the bound on the WAL should this thread stop."""


class WalCheckpointer:
    def __init__(self, database: str, interval: float, timeout: float = 5.0) -> None:
        self._database = database
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last: tuple[int, int, int] | None = None  # the last checkpoint's (busy, log, checkpointed)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="colibri-wal-checkpoint", daemon=True)
        self._thread.start()

    def checkpoint(self, connection: sqlite3.Connection) -> tuple[int, int, int]:
        """One PASSIVE checkpoint: (busy, frames in the WAL, frames checkpointed)."""
        row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.last = (int(row[0]), int(row[1]), int(row[2]))
        return self.last

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self._database, timeout=self._timeout, check_same_thread=False)
        except sqlite3.Error as exc:  # the store's own engine reports the database's state; say why here
            log.warning("WAL checkpoints: cannot open %s: %s; SQLite's own checkpoints are off", self._database, exc)
            return
        try:
            while not self._stop.wait(self._interval):
                try:
                    self.checkpoint(connection)
                except Exception as exc:  # locked, or the disk: the next interval tries again
                    log.debug("WAL checkpoint of %s did not run: %s", self._database, exc)
            with contextlib.suppress(sqlite3.Error):
                self.checkpoint(connection)  # the last one, as the daemon stops
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + self._interval)
            self._thread = None
