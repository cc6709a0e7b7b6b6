"""``colibri daemon``: the hive on Unix sockets, its background loops, reload and clean stop.

Sockets (HTTP/1.1 + JSON, API v1, see docs/openapi.yaml):

* ``run_dir/admin.sock`` (0600): the CLI and operators (``curl --unix-socket``);
* ``run_dir/agents/<tenant>/agent.sock`` (0666 in a 0755 directory under a 0700 ``agents/``):
  the directory is what spawn mounts into that tenant's jail at ``/var/run/colibri``, so the
  jail's agent reaches ``/var/run/colibri/agent.sock`` and nobody else on the host can;
* ``run_dir/lanes/<lane>/agent.sock``: shared lanes the operator declared.

The store is blocking SQLAlchemy: every database call runs on one worker thread, so the event
loop never waits on a disk and the hive's rules run one at a time.  Heartbeats never touch the
store on their own; the liveness loop writes them in batches.
"""

import asyncio
import contextlib
import errno
import fcntl
import functools
import ipaddress
import logging
import logging.handlers
import os
import resource
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from colibri import __version__
from colibri.daemon import signals
from colibri.daemon.api import Api
from colibri.daemon.http import Gate, HttpProtocol, Limits, Pool, Router, close_all, sweep
from colibri.daemon.liveness import Registry
from colibri.daemon.logfilter import RateLimit, SafeFormatter, about
from colibri.daemon.metrics import Metrics, process_gauges, process_health
from colibri.daemon.reconcile import run_reconcile
from colibri.errors import ColibriError, ConfigError, DaemonError, StoreError
from colibri.services.hive import HiveService, Policy, Requeued, Scope
from colibri.settings import Settings, load_settings
from colibri.store.db import Store, translate_errors
from colibri.store.models import AGENT_ID
from colibri.store.repos import TenantRepo

log = logging.getLogger("colibri.daemon")
T = TypeVar("T")
SOCKET_SCAN_SECONDS = 5.0
STOP_GRACE_SECONDS = 5.0
RECONCILE_BUDGET_SECONDS = 120.0
SWEEP_SECONDS = 1.0
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass
class Waiter:
    """An agent long-polling for work (``gone``: its client closed the connection)."""

    key: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    gone: Callable[[], bool] = lambda: False


RATE_LIMIT = RateLimit()


def configure_logging(target: str, lines: int = 20, interval: float = 10.0) -> None:
    """Log to stderr, or to syslog(3) (facility daemon) as rc.d services do; rate-limited per cause."""
    RATE_LIMIT.lines, RATE_LIMIT.interval = lines, interval
    root = logging.getLogger("colibri")
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    sink: logging.Handler
    if target == "syslog":
        address = "/var/run/log" if Path("/var/run/log").exists() else "/dev/log"
        sink = logging.handlers.SysLogHandler(address, logging.handlers.SysLogHandler.LOG_DAEMON)
        sink.setFormatter(SafeFormatter("colibri[%(process)d]: %(message)s"))
    else:
        sink = logging.StreamHandler()
        sink.setFormatter(SafeFormatter("%(asctime)s colibri %(levelname)s %(message)s"))
    sink.addFilter(RATE_LIMIT)
    root.addHandler(sink)
    root.setLevel(logging.INFO)
    root.propagate = False


class Daemon:
    """The hive daemon.  ``run()`` until the stop event; tests set the events themselves."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.settings = settings
        self._config_path = config_path
        self.policy = Policy.from_settings(settings)
        self.registry = Registry(self.policy)
        self.metrics = Metrics()
        self.api = Api(self)
        self.stopping = False
        self.store_up = True
        self._store: Store | None = None
        self._hive: HiveService | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="colibri-db")
        self._side = ThreadPoolExecutor(1, thread_name_prefix="colibri-reconcile")
        self._reconcile_running: Future[Any] | None = None
        self._conns: set[HttpProtocol] = set()
        self._pool_conns = Pool(1024)  # the agent sockets' share of the descriptors (set at start)
        self._fd_limit = 1024
        self._servers: dict[tuple[str, str | None], tuple[asyncio.Server, Path | None]] = {}
        self._waiters: list[Waiter] = []
        self.task_waits = 0  # GET /v1/tasks/{id}?wait= long-polls in progress
        self._task_events: dict[int, asyncio.Event] = {}
        self._pending_states: list[tuple[str, str]] = []
        self._started = time.time()
        self._lock_file: Any = None

    @property
    def hive(self) -> HiveService:
        assert self._hive is not None, "the daemon is not running"
        return self._hive

    @property
    def admin_socket(self) -> Path:
        return self.settings.run_dir / "admin.sock"

    # ---- lifecycle ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
        """Open the store and the sockets, run the loops until ``stop`` is set, then stop cleanly."""
        reload = reload or asyncio.Event()
        self._lock()
        asyncio.get_running_loop().set_exception_handler(self._loop_exception)
        self._fd_budget()
        loops: list[asyncio.Task[None]] = []
        try:
            await self._start()
            loops = [
                asyncio.create_task(self._every(lambda: SWEEP_SECONDS, self._sweep, "sweep")),
                asyncio.create_task(self._every(self._tick, self._liveness, "liveness")),
                asyncio.create_task(self._every(self._lease_tick, self._leases, "leases")),
                asyncio.create_task(self._every(lambda: SOCKET_SCAN_SECONDS, self._scan_sockets, "sockets")),
                asyncio.create_task(self._every(self._reconcile_tick, self._reconcile, "reconcile")),
                asyncio.create_task(self._every(self._retention_tick, self._retention, "retention")),
            ]
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

    async def _start(self) -> None:
        settings = self.settings
        self._store = await self._call(Store, settings.database, settings.database_timeout)
        self._hive = HiveService(self._store, self.policy)
        for record in await self.db(self.hive.load_agents):
            self.registry.upsert(record)
        await self._open_admin()
        tenants, lanes = await self.db(self.hive.socket_owners)
        for tenant in tenants:
            await self._try_open("tenant", tenant)
        for lane in lanes:
            await self._try_open("lane", lane)
        if settings.metrics_address:
            await self._open_metrics(settings.metrics_address)

    async def _stop(self, loops: list["asyncio.Task[None]"]) -> None:
        self.stopping = True
        for server, _ in self._servers.values():
            server.close()
        for waiter in self._waiters:
            waiter.event.set()
        for event in self._task_events.values():
            event.set()
        await close_all(self._conns, STOP_GRACE_SECONDS)
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        if self._hive is not None:
            with contextlib.suppress(ColibriError):
                await self._liveness(final=True)
        for server, path in self._servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
            if path is not None:
                path.unlink(missing_ok=True)
        self._servers.clear()
        if self._store is not None:
            await self._call(self._store.close)
        self._pool.shutdown(wait=True)
        self._side.shutdown(wait=False, cancel_futures=True)
        if self._lock_file is not None:
            self._lock_file.close()
        log.info("colibri daemon stopped")

    def _fd_budget(self) -> None:
        """Raise the soft descriptor limit to the hard one; agent connections get what is left after
        the reserve (store, logs, listening sockets) and the admin socket's own budget."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
        self._fd_limit = soft if soft != resource.RLIM_INFINITY else 65536
        self._resize_pool()

    def _resize_pool(self) -> None:
        spare = self._fd_limit - self.settings.daemon_fd_reserve - self.settings.daemon_admin_max_connections
        self._pool_conns.cap = max(16, spare - len(self._servers))

    def _refused(self, socket: str, why: str) -> None:
        self.metrics.inc("colibri_http_refused_total", reason=why)
        if why in ("rate", "bytes"):
            kind = "request rate" if why == "rate" else "request bytes per second"
            log.warning("socket %s: over its %s; answering 429", socket, kind, extra=about(socket))
        elif why == "descriptors":
            log.warning("socket %s: the agent sockets' descriptor budget is spent; connection refused", socket,
                        extra=about(socket))  # fmt: skip
        else:
            log.warning("socket %s: connection limit reached; connection refused", socket, extra=about(socket))

    def _gate(self, name: str, admin: bool = False) -> Gate:
        settings = self.settings
        limits = Limits(
            max_head=settings.daemon_max_header_bytes,
            max_body=settings.daemon_max_body_bytes,
            max_small_body=min(settings.daemon_max_small_body_bytes, settings.daemon_max_body_bytes),
            request_timeout=settings.daemon_request_timeout,
            idle_timeout=settings.daemon_idle_timeout,
        )
        if admin:
            return Gate(name, settings.daemon_admin_max_connections, limits=limits, everyone=self._conns,
                        refused=self._refused)  # fmt: skip
        return Gate(
            name, settings.daemon_max_connections_per_socket, settings.daemon_socket_request_rate,
            settings.daemon_socket_request_burst, limits, self._conns, self._pool_conns, self._refused,
            settings.daemon_socket_byte_rate, settings.daemon_socket_byte_burst,
        )  # fmt: skip

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
        sweep(self._conns)
        RATE_LIMIT.flush(log)

    def _lock(self) -> None:
        run_dir = self.settings.run_dir
        try:
            run_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
            handle = (run_dir / "daemon.lock").open("a")
        except OSError as exc:
            raise DaemonError(f"cannot use the run directory {run_dir}: {exc.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise DaemonError(f"another colibri daemon is running (it holds {run_dir / 'daemon.lock'})") from None
        self._lock_file = handle

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
        self.hive.policy = self.policy
        configure_logging(self.settings.log_target, self.settings.log_rate_limit_lines,
                          self.settings.log_rate_limit_interval)  # fmt: skip
        log.info("settings reloaded (heartbeat interval %.1f s, lease %.0f s)", self.policy.heartbeat_interval,
                 self.policy.lease_seconds)  # fmt: skip

    # ---- the database thread ------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, *args))

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

    # ---- routing: waiters and wake-ups --------------------------------------------------------

    async def claim(self, key: str, wait: float, conn: HttpProtocol | None = None) -> dict[str, Any] | None:
        """Lease a task to agent ``key``, waiting up to ``wait`` seconds for one to arrive.

        When the client closes ``conn`` no task is taken (a waiting claim ends at once), and one
        taken in the meantime is given back at once (without spending an attempt)."""

        def gone() -> bool:
            return conn is not None and conn.closed

        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            agent = self.registry.get(key)
            if agent is None or agent.state in ("lost", "left"):
                from colibri.errors import AgentNotFound

                raise AgentNotFound(f"agent not registered (or lost): {key}; register again")
            if gone():
                return None
            if agent.state == "active":
                task = await self.db(self.hive.claim, agent.ref())
                if task is not None:
                    if gone():
                        await self.give_back(task)
                        return None
                    return task
            remaining = deadline - loop.time()
            if remaining <= 0 or self.stopping:
                return None
            waiter = Waiter(key, gone=gone)
            self._waiters.append(waiter)
            unwatch = conn.watch(waiter.event.set) if conn is not None else None
            try:
                await asyncio.wait_for(waiter.event.wait(), remaining)
            except TimeoutError:
                pass
            finally:
                if unwatch is not None:
                    unwatch()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    async def give_back(self, task: dict[str, Any]) -> None:
        """A leased task whose answer could not be delivered: queued again at once, no attempt spent."""
        released = await self.db(self.hive.release, int(task["id"]), str(task["lease"]))
        if released:
            self.metrics.inc("colibri_tasks_requeued_total", outcome="undelivered")
            log.warning("task %d given back: its agent's connection closed before the lease was delivered",
                        task["id"], extra=about(task["tenant"]))  # fmt: skip
            self.notify(task["tenant"], task["capability"])

    def give_back_later(self, task: dict[str, Any]) -> None:
        """For a response that could not be written (the client went after the claim)."""
        future = asyncio.ensure_future(self.give_back(task))
        future.add_done_callback(_log_failure)

    def notify(self, tenant: str | None, capability: str) -> None:
        """A task is queued: wake the longest-waiting agent that may take it (whose client is there)."""
        for waiter in self._waiters:
            if waiter.event.is_set() or waiter.gone():
                continue
            agent = self.registry.get(waiter.key)
            if agent is not None and self.registry.may_take(agent, tenant, capability):
                waiter.event.set()
                return

    def after_requeue(self, requeued: list[Requeued]) -> None:
        for item in requeued:
            self.metrics.inc("colibri_tasks_requeued_total", outcome=item.state)
            outcome = "requeued" if item.state == "queued" else "failed: no attempts left"
            log.warning("task %d %s", item.task_id, outcome, extra=about(item.tenant))
            if item.state == "queued":
                self.notify(item.tenant, item.capability)
            else:
                self.finished(item.task_id)

    def task_event(self, task_id: int) -> asyncio.Event:
        return self._task_events.setdefault(task_id, asyncio.Event())

    def finished(self, task_id: int) -> None:
        event = self._task_events.pop(task_id, None)
        if event is not None:
            event.set()

    # ---- background loops ---------------------------------------------------------------------

    def _tick(self) -> float:
        return min(1.0, max(0.05, min(self.policy.stale_after / 5, self.policy.heartbeat_interval / 2)))

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
            self._pending_states += self.registry.sweep()
        if self._pending_states:
            changes, self._pending_states = self._pending_states, []
            try:
                requeued = await self.db(self.hive.set_states, changes)
            except StoreError:
                self._pending_states = changes + self._pending_states
                raise
            for key, state in changes:
                log.warning("agent %s is %s", key, state, extra=about(key))
            self.after_requeue(requeued)
        batch = self.registry.take_dirty()
        if batch:
            try:
                written = await self.db(self.hive.flush_heartbeats, batch)
            except StoreError:
                self.registry.restore_dirty(batch)
                raise
            self.metrics.inc("colibri_heartbeat_flushes_total")
            self.metrics.inc("colibri_heartbeat_rows_written_total", written)

    async def _leases(self) -> None:
        self.after_requeue(await self.db(self.hive.expire_leases))

    async def _scan_sockets(self) -> None:
        """Open sockets for tenants that became active, close those of removed tenants."""
        tenants, lanes = await self.db(self.hive.socket_owners)
        for tenant in tenants:
            await self._try_open("tenant", tenant)
        for lane in lanes:
            await self._try_open("lane", lane)
        open_tenants = [name for kind, name in self._servers if kind == "tenant" and name]
        for gone in await self.db(self.hive.removed_tenants, open_tenants):
            await self.close_agent_socket("tenant", gone)

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

    # ---- sockets --------------------------------------------------------------------------------

    async def _open_admin(self) -> None:
        path = self.admin_socket
        _remove_stale(path)
        loop = asyncio.get_running_loop()
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            handler = self.api.handler(Scope("admin"))
            gate = self._gate("admin", admin=True)
            server = await loop.create_unix_server(lambda: HttpProtocol(handler, gate), str(path))
        except OSError as exc:
            raise DaemonError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        path.chmod(0o600)
        self._servers[("admin", None)] = (server, path)

    async def _try_open(self, kind: str, name: str) -> None:
        try:
            await self.open_agent_socket(kind, name)
        except (DaemonError, StoreError) as exc:  # StoreError: the tenant's gid could not be read
            log.error("%s", exc)

    async def open_agent_socket(self, kind: str, name: str) -> Path:
        """Listen on ``run_dir/agents/<tenant>/agent.sock`` (or ``lanes/<lane>``); idempotent."""
        existing = self._servers.get((kind, name))
        if existing is not None and existing[1] is not None:
            return existing[1]
        base = self.settings.run_dir / ("agents" if kind == "tenant" else "lanes")
        directory, path = base / name, base / name / "agent.sock"
        try:
            # agents/ is root-only: on the host nobody but root reaches a tenant's socket; inside the
            # jail the bind mount of the tenant's own directory is the only way in.
            gid = await self.db(self._agent_gid, name) if kind == "tenant" else None
            # agents/ 0711 (each tenant's directory admits its own agent's gid only); lanes/ 0700.
            top = 0o711 if kind == "tenant" else 0o700
            base.mkdir(mode=top, exist_ok=True)
            base.chmod(top)
            made = not directory.is_dir()  # spawn sets an existing one from the jail's own ids
            directory.mkdir(mode=0o750 if kind == "tenant" else 0o755, exist_ok=True)
            if made and gid is not None:  # root:<the tenant's agent gid> 0750: only its agent
                os.chown(directory, 0, gid, follow_symlinks=False)
            _remove_stale(path)
            handler = self.api.handler(Scope(kind, name))  # type: ignore[arg-type]
            gate = self._gate(f"{kind}:{name}")
            loop = asyncio.get_running_loop()
            # Created 0666 by the umask: no chmod afterwards, which would follow a symlink the
            # jail (its directory is mounted read-write there) could put in the socket's place.
            old = os.umask(0o111)
            try:
                server = await loop.create_unix_server(lambda: HttpProtocol(handler, gate), str(path))
            finally:
                os.umask(old)
        except OSError as exc:
            raise DaemonError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        self._servers[(kind, name)] = (server, path)
        self._resize_pool()
        log.info("agent socket for %s %s: %s", kind, name, path)
        return path

    def _agent_gid(self, tenant_id: str) -> int | None:
        """The tenant's agent gid from its row (None: no block yet; spawn sets the directory)."""
        assert self._store is not None
        with self._store.session() as session:
            tenant = TenantRepo(session).get(tenant_id)
            return None if tenant is None or tenant.uid_base is None else tenant.uid_base + AGENT_ID

    async def close_agent_socket(self, kind: str, name: str) -> bool:
        found = self._servers.pop((kind, name), None)
        if found is None:
            return False
        server, path = found
        server.close()
        self._resize_pool()
        if path is not None:
            path.unlink(missing_ok=True)
        log.info("agent socket for %s %s closed", kind, name)
        return True

    async def _open_metrics(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
            number = int(port)
        except ValueError:
            loopback, number = False, 0
        if not loopback or not 0 < number < 65536:
            raise ConfigError(f"metrics_address must be a loopback host:port, not {address!r}")
        handler = self.api.handler(Scope("admin"), self.api.metrics_only)
        loop = asyncio.get_running_loop()
        try:
            gate = self._gate("metrics", admin=True)
            server = await loop.create_server(lambda: HttpProtocol(handler, gate), host.strip("[]"), number)
        except OSError as exc:
            raise DaemonError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        self._servers[("metrics", None)] = (server, None)

    # ---- health and metrics -------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        store = "ok"
        tasks: dict[str, int] = {}
        try:
            await asyncio.wait_for(self.db(self._store_check), 3.0)
            tasks = await asyncio.wait_for(self.db(self.hive.task_counts), 3.0)
        except (StoreError, TimeoutError) as exc:
            store = f"unavailable: {exc}" if str(exc) else "unavailable: no answer"
        return {
            "status": "ok" if store == "ok" else "degraded",
            "version": __version__,
            "store": store,
            "backend": self.settings.jail_backend,
            "agents": self.registry.counts(),
            "queue_depth": tasks.get("queued"),
            "tasks": tasks,
            "heartbeat_interval": round(self.policy.base_interval(1, self.registry.scopes + 1), 3),
            "sockets": sum(1 for kind, _ in self._servers if kind in ("tenant", "lane")),
            "uptime_seconds": round(time.time() - self._started, 1),
            **process_health(),
        }

    def _store_check(self) -> None:
        """Can the store take a write?  On SQLite, take the write lock and let it go at once."""
        assert self._store is not None
        store = self._store
        if store.engine.dialect.name != "sqlite":
            store.check()
            return
        with translate_errors(store.url), store.engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            conn.exec_driver_sql("ROLLBACK")

    async def metrics_text(self) -> str:
        gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
            ("colibri_up", ()): 1,
            ("colibri_info", (("version", __version__),)): 1,
            ("colibri_heartbeats_total", ()): self.registry.heartbeats,
            ("colibri_heartbeat_interval_seconds", ()): self.policy.base_interval(1, self.registry.scopes + 1),
            ("colibri_connections", ()): len(self._conns),
            ("colibri_claims_waiting", ()): len(self._waiters),
            ("colibri_task_waits", ()): self.task_waits,
            ("colibri_agent_sockets", ()): sum(1 for kind, _ in self._servers if kind in ("tenant", "lane")),
        }
        for state, count in self.registry.counts().items():
            gauges[("colibri_agents", (("state", state),))] = count
        with contextlib.suppress(StoreError, TimeoutError):
            for state, count in (await asyncio.wait_for(self.db(self.hive.task_counts), 3.0)).items():
                gauges[("colibri_tasks", (("state", state),))] = count
        gauges[("colibri_store_up", ())] = 1 if self.store_up else 0
        gauges.update(process_gauges())
        return self.metrics.render(gauges)


def _log_failure(future: "asyncio.Future[None]") -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("giving a task back failed: %s", exc)


def _remove_stale(path: Path) -> None:
    """A socket left by a daemon that died (the lock says none runs now) is removed."""
    if path.is_socket() or path.is_symlink():
        path.unlink()
    elif path.exists():
        raise DaemonError(f"{path} exists and is not a socket; refusing to replace it")


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
