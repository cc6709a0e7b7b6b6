"""``colibri daemon``: the hive on Unix sockets, its background loops, reload and clean stop.

Sockets (HTTP/1.1 + JSON, API v1, see docs/openapi.yaml):

* ``run_dir/admin.sock`` (0600): the CLI and operators (``curl --unix-socket``);
* ``run_dir/agents/<tenant>/agent.sock`` (0666 in a 0755 directory under a 0700 ``agents/``):
  the directory is what spawn mounts into that tenant's jail at ``/var/run/colibri``, so the
  jail's agent reaches ``/var/run/colibri/agent.sock`` and nobody else on the host can;
* ``run_dir/lanes/<lane>/agent.sock``: shared lanes the operator declared.

The parts: this module is the process (the lock, the database thread, the background loops,
reload and stop); ``sockets`` listens, ``dispatcher`` routes tasks to waiting agents, ``status``
answers health and metrics, and ``api`` serves the routes over ``api.Parts``, built here.

The store is blocking SQLAlchemy: every database call runs on one worker thread, so the event loop never waits on
a disk and the hive's rules run one at a time; heartbeats reach the store only in the liveness loop's batches.
"""

import asyncio
import contextlib
import contextvars
import functools
import logging
import logging.handlers
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from colibri import __version__
from colibri.adapters.audit_keys import KeyDir
from colibri.audit import origin
from colibri.daemon import audit_loop, children, signals
from colibri.daemon.api import Api, Parts
from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.hostlease import HostLease
from colibri.daemon.http import Router
from colibri.daemon.liveness import Registry
from colibri.daemon.lockfile import take_lock
from colibri.daemon.logfilter import RATE_LIMIT, about, configure_logging
from colibri.daemon.metrics import Metrics
from colibri.daemon.notify import Wakeups
from colibri.daemon.outbox import Outbox
from colibri.daemon.reconcile import run_reconcile
from colibri.daemon.replay import Replay
from colibri.daemon.sockets import OUT_OF_FDS, Sockets
from colibri.daemon.status import Status
from colibri.errors import ColibriError, ConfigError, StoreError
from colibri.services.hive.rules import Policy
from colibri.services.hive.service import HiveService
from colibri.settings import Settings, load_settings
from colibri.store.db import Store
from colibri.store.owners import check_writable

log = logging.getLogger("colibri.daemon")
T = TypeVar("T")
SOCKET_SCAN_SECONDS = 5.0
STOP_GRACE_SECONDS = 5.0
RECONCILE_BUDGET_SECONDS = 120.0
SWEEP_SECONDS = 1.0


class Daemon:
    """The hive daemon's process.  ``run()`` until the stop event; tests set the events themselves."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self._config_path = config_path
        self.policy = Policy.from_settings(settings)
        self.registry = Registry(self.policy)
        self.registry.write_every = _write_every(settings)
        self.metrics = Metrics()
        self.stopping = False
        self.store_up = True
        self._store: Store | None = None
        self._hive: HiveService | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="colibri-db")
        self._side = ThreadPoolExecutor(1, thread_name_prefix="colibri-reconcile")
        self._reconcile_running: Future[Any] | None = None
        self._pending_states: list[tuple[str, str]] = []
        self._lock_file: Any = None
        self.wakeups: Wakeups | None = None  # LISTEN/NOTIFY between hosts on one PostgreSQL
        hive, policy = (lambda: self.hive), (lambda: self.policy)
        self.dispatcher = Dispatcher(self.registry, self.metrics, self.db, hive, lambda: self.stopping)
        self.sockets = Sockets(lambda: self.settings, self.metrics, self.db, hive)
        self.lease = HostLease(self.db, hive, self.registry, self.dispatcher, self.metrics, settings.run_dir,
                               settings.state_dir)  # fmt: skip
        self.outbox = Outbox(settings.state_dir, settings.daemon_outbox_max_bytes)
        self.replay = Replay(self.outbox, self.db, hive, self.metrics, self.dispatcher)
        self.status = Status(self.metrics, self.dispatcher, self.sockets, self.db, hive, policy,
                             lambda: self.settings.jail_backend, self._store_check, lambda: self.store_up,
                             self._fleet)  # fmt: skip
        self.children = kids = children.for_daemon(self, config_path)  # an agent's children (issue 14)
        self.api = Api(Parts(self.metrics, self.dispatcher, self.sockets, self.db, hive, policy, self.status.health,
                             self.status.metrics_text, lambda: self.stopping, self.outbox.append, kids))  # fmt: skip
        self.sockets.handler_for = self.api.handler
        self.sockets.metrics_router = self.api.metrics_only

    @property
    def hive(self) -> HiveService:
        assert self._hive is not None, "the daemon is not running"
        return self._hive

    @property
    def admin_socket(self) -> Path:
        return self.sockets.admin_socket

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
        """Open the store and the sockets, run the loops until ``stop`` is set, then stop cleanly."""
        reload = reload or asyncio.Event()
        self.lease.stop_event = stop  # the host's lease taken over, the host removed: stop, then raise why
        self._lock()
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        self.sockets.fd_budget()
        loops: list[asyncio.Task[None]] = []
        try:
            await self._start()
            loops = [
                asyncio.create_task(self._every(lambda: SWEEP_SECONDS, self._sweep, "sweep")),
                asyncio.create_task(self._every(self._tick, self._liveness, "liveness")),
                asyncio.create_task(self._every(self._lease_tick, self._leases, "leases")),
                asyncio.create_task(self._every(self.lease.renew_every, self.lease.renew, "host lease")),
                asyncio.create_task(self._every(self.lease.check_every, self.lease.rescue, "host loss")),
                asyncio.create_task(self._every(lambda: SOCKET_SCAN_SECONDS, self._scan_sockets, "sockets")),
                asyncio.create_task(self._every(self._reconcile_tick, self._reconcile, "reconcile")),
                asyncio.create_task(self._every(self._retention_tick, self._retention, "retention")),
                asyncio.create_task(self._every(lambda: children.CONVERGE_SECONDS, self.children.converge, "children")),
                asyncio.create_task(audit_loop.run(self)),  # sign this host's checkpoints, cosign the others'
            ]
            if self.wakeups is not None:  # several hosts' daemons: the fallback for a lost wake-up
                loops.append(asyncio.create_task(self._every(self._poll_tick, self.dispatcher.poll, "poll")))
            log.info("colibri daemon %s ready: %s", __version__, self.admin_socket)
            while not stop.is_set():
                waiting = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(reload.wait())]
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for pending in waiting:
                    pending.cancel()
                if reload.is_set() and not stop.is_set():
                    reload.clear()
                    await self.reload()
        finally:
            await self._stop(loops)
        if self.lease.halted is not None:
            raise self.lease.halted

    async def _start(self) -> None:
        settings = self.settings
        keys = KeyDir(settings.state_dir / "audit", settings.host)  # its entries carry this host's MAC
        origin.set_origin(settings.host, "daemon", keys.entry_key)  # requests record under their socket's actor
        idle = max(10.0, settings.host_lease_seconds)  # a frozen daemon's open transaction ends by then
        # SQLite's WAL checkpoints on a thread of their own, not in a request's commit (store/walcheckpoint.py)
        opened = functools.partial(Store, settings.database, settings.database_timeout, idle, wal_checkpoints=1.0)
        self._store = await self._call(opened)
        self._hive = HiveService(self._store, self.policy, host=settings.host,
                                 host_lease=(settings.host_lease_seconds, settings.host_lease_grace))  # fmt: skip
        await self.lease.start()
        if self._store.engine.dialect.name == "postgresql":
            loop = asyncio.get_running_loop()
            self.wakeups = Wakeups(settings.database, self.dispatcher.wake, self.dispatcher.wake_waiting,
                                   loop.call_soon_threadsafe, settings.database_timeout)  # fmt: skip
            self.wakeups.start()
            self.dispatcher.announce = self.wakeups.announce
        for record in await self.db(self.hive.load_agents):
            self.registry.upsert(record)
        tenants, lanes = await self.db(self.hive.socket_owners)
        for tenant in tenants:
            await self.sockets.try_open("tenant", tenant)
        for lane in lanes:
            await self.sockets.try_open("lane", lane)
        if settings.metrics_address:
            await self.sockets.open_metrics(settings.metrics_address)
        await self.sockets.open_admin()  # last: once /health answers, every socket the store names is open

    async def _stop(self, loops: list["asyncio.Task[None]"]) -> None:
        self.stopping = True
        self.sockets.stop_listening()
        self.dispatcher.wake_all()
        await self.sockets.close(STOP_GRACE_SECONDS)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self._hive is not None:
            with contextlib.suppress(ColibriError):
                await self._liveness(final=True)
            with contextlib.suppress(ColibriError):
                await self.lease.stop()
        await self.sockets.remove()
        if self.wakeups is not None:
            self.dispatcher.announce = None
            await asyncio.get_running_loop().run_in_executor(None, self.wakeups.stop)
        if self._store is not None:
            await self._call(self._store.close)
        self._pool.shutdown(wait=True)
        self._side.shutdown(wait=False, cancel_futures=True)
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("colibri daemon stopped")

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's own errors: out of descriptors on accept is one warning line (asyncio backs the
        listening socket off for a second by itself), never a traceback per accept."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in OUT_OF_FDS:
            self.metrics.inc("colibri_accept_errors_total")
            log.warning("accept: %s; that socket pauses accepting for a second", exc.strerror or exc)
            return
        log.error("event loop: %s", context.get("message", "error"), exc_info=exc)

    async def _sweep(self) -> None:
        self.sockets.sweep()
        RATE_LIMIT.flush(log)

    def _lock(self) -> None:
        self._lock_file = take_lock(self.settings.run_dir)

    async def reload(self) -> None:
        """SIGHUP: read the settings again and apply what can change while running."""
        try:
            settings, _ = await self._call(load_settings, self._config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the current settings: %s", exc)
            return
        for name in ("run_dir", "database_url", "state_dir", "metrics_address"):
            if getattr(settings, name) != getattr(self.settings, name):
                log.warning("reload: %s changed; it takes effect at the next restart", name)
        self.settings = settings.model_copy(
            update={n: getattr(self.settings, n) for n in ("run_dir", "database_url", "state_dir", "metrics_address")}
        )
        self.policy = Policy.from_settings(self.settings)
        self.registry.policy = self.policy
        self.registry.write_every = _write_every(self.settings)
        self.hive.policy = self.policy
        hosts = self.hive.hosts
        hosts.seconds, hosts.grace = self.settings.host_lease_seconds, self.settings.host_lease_grace
        configure_logging(self.settings.log_target, self.settings.log_rate_limit_lines,
                          self.settings.log_rate_limit_interval)  # fmt: skip
        log.info("settings reloaded (heartbeat interval %.1f s, lease %.0f s)", self.policy.heartbeat_interval,
                 self.policy.lease_seconds)  # fmt: skip

    # ---- the database thread ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # in a copy of the caller's context: the store call records under the request's audit origin
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, functools.partial(fn, *args))

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store operation on the database thread; record whether the store answers."""
        try:
            result = await self._call(fn, *args)
        except StoreError:
            self.store_up = False
            self.metrics.inc("colibri_store_errors_total")
            raise
        self.store_up = True
        return result

    # ---- background loops ---------------------------------------------------------------------

    def _tick(self) -> float:
        return min(1.0, max(0.05, min(self.policy.stale_after / 5, self.policy.heartbeat_interval / 2)))

    def _poll_tick(self) -> float:
        return self.settings.task_poll_interval

    def _lease_tick(self) -> float:
        return min(1.0, max(0.05, self.policy.lease_seconds / 10))

    def _retention_tick(self) -> float:
        return min(60.0, max(0.5, self.policy.retention_seconds / 10))

    async def _retention(self) -> None:
        """Delete finished tasks past ``task_retention_seconds`` (a batch a run; the count and size
        caps per tenant are kept as tasks finish)."""
        deleted = await self.db(self.hive.prune_expired)
        if deleted:
            self.metrics.inc("colibri_tasks_pruned_total", deleted)

    def _reconcile_tick(self) -> float:
        return self.settings.reconcile_interval or 3600.0

    async def _every(self, interval: Callable[[], float], body: Callable[[], Any], name: str) -> None:
        """Run ``body`` every ``interval()`` seconds, each run bounded in time; errors are logged."""
        while not self.stopping:
            await asyncio.sleep(interval())
            try:
                await asyncio.wait_for(body(), max(10.0, 10 * interval()))
            except ColibriError as exc:
                log.warning("%s loop: %s", name, exc)
            except TimeoutError:
                log.warning("%s loop: a run took too long and was abandoned", name)
            except Exception:
                log.exception("%s loop failed; it goes on", name)

    async def _liveness(self, final: bool = False) -> None:
        """Sweep TTLs (stale, lost → requeue), then flush the coalesced heartbeats in one batch."""
        if not final:
            self._pending_states += self.registry.sweep(self._tick())
        if self._pending_states:
            changes, self._pending_states = self._pending_states, []
            try:
                requeued = await self.db(self.hive.set_states, changes)
            except StoreError:
                self._pending_states = changes + self._pending_states
                raise
            for key, state in changes:
                log.warning("agent %s is %s", key, state, extra=about(key))
            self.dispatcher.after_requeue(requeued)
        await self._replay()
        batch, beating = self.registry.take_flush()
        if beating:
            try:
                written, extended = await self.db(self.hive.flush, batch, beating, self.dispatcher.started)
            except StoreError:
                self.registry.restore_flush(batch, beating)
                raise
            self.metrics.inc("colibri_heartbeat_flushes_total")
            self.metrics.inc("colibri_heartbeat_rows_written_total", written)
            if extended:
                self.metrics.inc("colibri_task_leases_extended_total", extended)

    def _fleet(self) -> dict[str, object]:
        """This host's part in the hive, for health and metrics (no store call)."""
        started = self._hive is not None
        return {
            "host": self.settings.host,
            "term": self.lease.term if started else 0,
            "lease": "held" if started and self.lease.trusted() else "not trusted",
            "outbox": len(self.outbox),
        }

    async def _replay(self) -> None:
        if self.store_up:
            await self.replay.run()

    async def _leases(self) -> None:
        await self.replay.run()  # what was acknowledged during an outage first: its leases may have run out
        self.dispatcher.after_requeue(await self.db(self.hive.expire_leases))

    async def _scan_sockets(self) -> None:
        """Open sockets for tenants that became active, close those of removed tenants."""
        tenants, lanes = await self.db(self.hive.socket_owners)
        for tenant in tenants:
            await self.sockets.try_open("tenant", tenant)
        for lane in lanes:
            await self.sockets.try_open("lane", lane)
        for gone in await self.db(self.hive.removed_tenants, self.sockets.open_tenants()):
            await self.sockets.close_agent_socket("tenant", gone)

    async def _reconcile(self) -> None:
        if not self.settings.reconcile_interval or self._store is None:
            return
        if self._reconcile_running is not None and not self._reconcile_running.done():
            log.warning("reconcile: the previous run has not returned yet; skipped")
            return
        self._reconcile_running = self._side.submit(run_reconcile, self.settings, self._store)
        budget = min(RECONCILE_BUDGET_SECONDS, max(1.0, self.settings.reconcile_interval))
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._reconcile_running), budget)
        except TimeoutError:
            self.metrics.inc("colibri_reconcile_runs_total", outcome="timeout")
            log.warning("reconcile: no answer within %.0f s; abandoned", budget)
            return
        except Exception as exc:  # a broken backend must not take the hive down with it
            self.metrics.inc("colibri_reconcile_runs_total", outcome="error")
            log.warning("reconcile failed: %s", exc)
            return
        self.metrics.inc("colibri_reconcile_runs_total", outcome="ok")

    def _store_check(self) -> None:
        """Can the store take a write?  (store/owners.py: on SQLite the write lock, taken and let go.)"""
        assert self._store is not None
        check_writable(self._store)


def _write_every(settings: Settings) -> float:
    """How often a beating agent's row is rewritten: the setting, but never more than two stale
    TTLs behind (liveness itself is decided here, in memory, and across hosts by the host lease)."""
    return min(settings.heartbeat_write_interval, 2 * settings.agent_stale_after)


async def serve(settings: Settings, config_path: Path | None = None) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT; SIGHUP reloads the settings."""
    stop, reload = asyncio.Event(), asyncio.Event()
    remove = signals.install(stop, reload)
    try:
        await Daemon(settings, config_path).run(stop, reload)
    finally:
        remove()


def run_forever(settings: Settings, config_path: Path | None = None) -> None:
    configure_logging(settings.log_target, settings.log_rate_limit_lines, settings.log_rate_limit_interval)
    asyncio.run(serve(settings, config_path))


__all__ = ["Daemon", "Router", "configure_logging", "run_forever", "serve"]
