"""The daemon's side of the host lease (issue 11): take a term at start, renew it, declare other
hosts lost, and tell this host's agents to register again after it was itself declared lost.

The rules are colibri/services/hive/hosts.py; this module runs them on the database thread and
acts on the answers in the event loop (the registry, the dispatcher's wake-ups, the log).

One daemon per host name (review R7).  A daemon does not start while another holds a live lease
under its host's name.  A restart after a crash (``kill -9``, a panic of the daemon alone) must
still start at once: the term each run takes is kept in ``run_dir/host-lease.json`` (root's, 0600),
and a lease of that term is this host's own previous run's.  A run directory emptied meanwhile
(a reboot: rc.d's cleanvar empties /var/run) leaves no such proof: the daemon then waits once for
one lease to lapse (``host_lease_seconds`` at most; a crashed daemon's lease ends by then) and
starts, or, the lease renewed meanwhile by a daemon that is alive, refuses to start (exit 5).
A daemon that finds its host's lease taken by another daemon, or its host removed from the hive
(``colibri hosts remove``), while it runs stops cleanly with that one line (exit 5, resp. 4).

A removed host stays removed (review R13) across the restarts of its supervisor (rc.d runs the
daemon under ``daemon -r``): the daemon that found its host removed leaves
``state_dir/host-removed.json``, and while it is there a daemon under that name does not create
the host's row again but exits 4 at start.  ``colibri hosts add`` of the name (the operator
enrols it again) lets the next start go on, and the file is removed then.
"""

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.liveness import Registry
from colibri.daemon.metrics import Metrics
from colibri.errors import ColibriError, HostNotFound, StateConflict
from colibri.services.hive.service import HiveService

log = logging.getLogger("colibri.daemon")
Db = Callable[..., Awaitable[Any]]
LEASE_FILE = "host-lease.json"
REMOVED_FILE = "host-removed.json"
LEASE_FILE_MAX_BYTES = 4096


class HostLease:
    def __init__(
        self, db: Db, hive: Callable[[], HiveService], registry: Registry, dispatcher: Dispatcher, metrics: Metrics,
        run_dir: Path | None = None, state_dir: Path | None = None,
    ) -> None:  # fmt: skip
        self._db, self._hive, self._registry = db, hive, registry
        self._dispatcher, self._metrics = dispatcher, metrics
        self._file = None if run_dir is None else run_dir / LEASE_FILE
        self._removed = None if state_dir is None else state_dir / REMOVED_FILE
        self.stop_event: asyncio.Event | None = None  # the daemon's stop (its run() sets it)
        self.halted: ColibriError | None = None  # why this daemon stopped on its own: run() raises it

    def renew_every(self) -> float:
        """Three renewals a lease: one missed renewal (a blip) never costs the lease."""
        return max(0.2, self._hive().hosts.seconds / 3)

    def check_every(self) -> float:
        """How often other hosts' leases are looked at (one UPDATE that usually matches nothing)."""
        return max(0.2, min(1.0, self._hive().hosts.seconds / 3))

    @property
    def term(self) -> int:
        return self._hive().hosts.lease.term

    def trusted(self) -> bool:
        return self._hive().hosts.trusted()

    async def start(self) -> None:
        hosts = self._hive().hosts
        removed = _read(self._removed).get("host") == hosts.host  # found removed by an earlier run
        try:
            try:
                lost = await self._db(hosts.start, self._prior_term(), not removed)
            except StateConflict as exc:
                wait = hosts.seconds + 1.0
                log.warning("%s; waiting %.0f s for that lease to lapse (a daemon of this host that crashed)",
                            exc, wait)  # fmt: skip
                if await self._stopped_within(wait):
                    return  # SIGTERM while waiting: no term taken, the daemon stops at once
                lost = await self._db(hosts.start, self._prior_term(), not removed)  # still held: a live owner
        except HostNotFound as exc:
            exc.message = (f"host {exc.name} was removed from the hive (colibri hosts remove): enrol it again "
                           f"(colibri hosts add {exc.name} ...) to rejoin, or disable colibri here")  # fmt: skip
            raise
        if removed and self._removed is not None:  # enrolled again meanwhile
            with contextlib.suppress(OSError):
                self._removed.unlink()
        self._dispatcher.started = await self._db(hosts.clock)  # leases end on the database's clock
        self._keep_term()
        self._back(lost)

    async def renew(self) -> None:
        try:
            renewed, lost = await self._db(self._hive().hosts.renew)
        except (StateConflict, HostNotFound) as exc:
            self._forget_term()
            if isinstance(exc, HostNotFound):
                exc.message = f"host {exc.name} was removed from the hive (colibri hosts remove); this daemon stops"
                _write(self._removed, {"host": exc.name})  # its supervisor's restart must not bring it back
            else:
                exc.message = f"this host's lease was taken over: {exc.message}; this daemon stops"
            if self.stop_event is None:
                raise
            log.error("%s", exc)
            self.halted = exc
            self.stop_event.set()
            return
        self._metrics.inc("colibri_host_lease_renewals_total", outcome="ok" if renewed else "new_term")
        if not renewed:
            log.warning("this host was declared lost while away; took term %d", self.term)
            self._keep_term()
            self._back(lost)

    async def _stopped_within(self, seconds: float) -> bool:
        if self.stop_event is None:
            await asyncio.sleep(seconds)
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)
        return self.stop_event.is_set()

    def _back(self, lost: list[str]) -> None:
        dropped = self._registry.drop_lost(lost)
        if dropped:
            log.warning("%d agents of this host were declared lost while it was away; they register again", dropped)

    async def rescue(self) -> None:
        for gone in await self._db(self._hive().hosts.rescue):
            self._metrics.inc("colibri_hosts_lost_total")
            log.warning("host %s is lost (its lease expired): %d agents lost, %d tasks requeued", gone.host,
                        len(gone.agents), len(gone.requeued))  # fmt: skip
            self._dispatcher.after_requeue(gone.requeued)

    async def stop(self) -> None:
        await self._db(self._hive().hosts.stop)
        self._forget_term()

    # ---- the term this run holds, kept in the run directory (review R7) -----------------------

    def _prior_term(self) -> int:
        """The term this host's previous daemon run took (0: none kept, or for another host name)."""
        kept = _read(self._file)
        term = kept.get("term")
        return term if isinstance(term, int) and kept.get("host") == self._hive().hosts.host and term > 0 else 0

    def _keep_term(self) -> None:
        _write(self._file, {"host": self._hive().hosts.host, "term": self.term})

    def _forget_term(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.unlink()


def _read(path: Path | None) -> dict[str, Any]:
    """A small JSON object this daemon wrote (``{}``: none, unreadable, or not an object)."""
    if path is None:
        return {}
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        found = json.loads(os.read(fd, LEASE_FILE_MAX_BYTES))
    except (OSError, ValueError):
        return {}
    finally:
        os.close(fd)
    return found if isinstance(found, dict) else {}


def _write(path: Path | None, body: dict[str, Any]) -> None:
    """Write it whole (a temporary file renamed over it), 0600, never through a symlink."""
    if path is None:
        return
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(body).encode())
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:  # the lease term: a restart after a crash then waits one lease out
        log.warning("cannot write %s: %s", path, exc.strerror or exc)
