"""The daemon's listening sockets: the admin socket, one per tenant and lane, the metrics port;
the connection budgets (``Gate``) and the descriptor budget they share."""

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import resource
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from colibri.daemon.http import Gate, HttpProtocol, Limits, Pool, Request, Router, close_all, sweep
from colibri.daemon.logfilter import about
from colibri.daemon.metrics import Metrics
from colibri.errors import ConfigError, DaemonError, StoreError
from colibri.services.hive.rules import Scope
from colibri.services.hive.service import HiveService
from colibri.settings import Settings
from colibri.store.models import AGENT_ID

log = logging.getLogger("colibri.daemon")
OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
Handler = Callable[[Request], Any]
HandlerFor = Callable[[Scope, "Router | None"], Handler]


class Sockets:
    """Opens and closes the listening sockets; ``handler_for(scope, router)`` is the API's."""

    def __init__(
        self, settings: Callable[[], Settings], metrics: Metrics, db: Callable[..., Awaitable[Any]],
        hive: Callable[[], HiveService],
    ) -> None:  # fmt: skip
        self._settings = settings
        self.metrics = metrics
        self._db = db
        self._hive = hive
        self.handler_for: HandlerFor | None = None
        self.metrics_router: Router | None = None
        self.conns: set[HttpProtocol] = set()
        self.pool = Pool(1024)  # the agent sockets' share of the descriptors (set at start)
        self.fd_limit = 1024
        self.servers: dict[tuple[str, str | None], tuple[asyncio.Server, Path | None]] = {}

    @property
    def admin_socket(self) -> Path:
        return self._settings().run_dir / "admin.sock"

    def agent_sockets(self) -> int:
        return sum(1 for kind, _ in self.servers if kind in ("tenant", "lane"))

    def open_tenants(self) -> list[str]:
        return [name for kind, name in self.servers if kind == "tenant" and name]

    def _handler(self, scope: Scope, router: Router | None = None) -> Handler:
        assert self.handler_for is not None, "the API is not attached"
        return self.handler_for(scope, router)

    # ---- budgets ------------------------------------------------------------------------------

    def fd_budget(self) -> None:
        """Raise the soft descriptor limit to the hard one; agent connections get what is left after
        the reserve (store, logs, listening sockets) and the admin socket's own budget."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            with contextlib.suppress(ValueError, OSError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
        self.fd_limit = soft if soft != resource.RLIM_INFINITY else 65536
        self.resize_pool()

    def resize_pool(self) -> None:
        settings = self._settings()
        spare = self.fd_limit - settings.daemon_fd_reserve - settings.daemon_admin_max_connections
        self.pool.cap = max(16, spare - len(self.servers))

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

    def gate(self, name: str, admin: bool = False) -> Gate:
        settings = self._settings()
        limits = Limits(
            max_head=settings.daemon_max_header_bytes,
            max_body=settings.daemon_max_body_bytes,
            max_small_body=min(settings.daemon_max_small_body_bytes, settings.daemon_max_body_bytes),
            request_timeout=settings.daemon_request_timeout,
            idle_timeout=settings.daemon_idle_timeout,
        )
        if admin:
            return Gate(name, settings.daemon_admin_max_connections, limits=limits, everyone=self.conns,
                        refused=self._refused)  # fmt: skip
        return Gate(
            name, settings.daemon_max_connections_per_socket, settings.daemon_socket_request_rate,
            settings.daemon_socket_request_burst, limits, self.conns, self.pool, self._refused,
            settings.daemon_socket_byte_rate, settings.daemon_socket_byte_burst,
        )  # fmt: skip

    def sweep(self) -> None:
        sweep(self.conns)

    # ---- opening and closing --------------------------------------------------------------------

    async def open_admin(self) -> None:
        path = self.admin_socket
        remove_stale(path)
        loop = asyncio.get_running_loop()
        old = os.umask(0o177)  # created 0600: no window in which others could connect
        try:
            handler = self._handler(Scope("admin"))
            gate = self.gate("admin", admin=True)
            server = await loop.create_unix_server(lambda: HttpProtocol(handler, gate), str(path))
        except OSError as exc:
            raise DaemonError(f"cannot listen on {path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old)
        path.chmod(0o600)
        self.servers[("admin", None)] = (server, path)

    async def try_open(self, kind: str, name: str) -> None:
        try:
            await self.open_agent_socket(kind, name)
        except (DaemonError, StoreError) as exc:  # StoreError: the tenant's gid could not be read
            log.error("%s", exc)

    async def open_agent_socket(self, kind: str, name: str) -> Path:
        """Listen on ``run_dir/agents/<tenant>/agent.sock`` (or ``lanes/<lane>``); idempotent."""
        existing = self.servers.get((kind, name))
        if existing is not None and existing[1] is not None:
            return existing[1]
        base = self._settings().run_dir / ("agents" if kind == "tenant" else "lanes")
        directory, path = base / name, base / name / "agent.sock"
        try:
            # agents/ is root-only: on the host nobody but root reaches a tenant's socket; inside the
            # jail the bind mount of the tenant's own directory is the only way in.
            gid = await self._db(self._hive().agent_gid, name, AGENT_ID) if kind == "tenant" else None
            # agents/ 0711 (each tenant's directory admits its own agent's gid only); lanes/ 0700.
            top = 0o711 if kind == "tenant" else 0o700
            base.mkdir(mode=top, exist_ok=True)
            base.chmod(top)
            made = not directory.is_dir()  # spawn sets an existing one from the jail's own ids
            directory.mkdir(mode=0o750 if kind == "tenant" else 0o755, exist_ok=True)
            if made and gid is not None:  # root:<the tenant's agent gid> 0750: only its agent
                os.chown(directory, 0, gid, follow_symlinks=False)
            remove_stale(path)
            handler = self._handler(Scope(kind, name))  # type: ignore[arg-type]
            gate = self.gate(f"{kind}:{name}")
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
        self.servers[(kind, name)] = (server, path)
        self.resize_pool()
        log.info("agent socket for %s %s: %s", kind, name, path)
        return path

    async def close_agent_socket(self, kind: str, name: str) -> bool:
        found = self.servers.pop((kind, name), None)
        if found is None:
            return False
        server, path = found
        server.close()
        self.resize_pool()
        if path is not None:
            path.unlink(missing_ok=True)
        log.info("agent socket for %s %s closed", kind, name)
        return True

    async def open_metrics(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
            number = int(port)
        except ValueError:
            loopback, number = False, 0
        if not loopback or not 0 < number < 65536:
            raise ConfigError(f"metrics_address must be a loopback host:port, not {address!r}")
        handler = self._handler(Scope("admin"), self.metrics_router)
        loop = asyncio.get_running_loop()
        try:
            gate = self.gate("metrics", admin=True)
            server = await loop.create_server(lambda: HttpProtocol(handler, gate), host.strip("[]"), number)
        except OSError as exc:
            raise DaemonError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        self.servers[("metrics", None)] = (server, None)

    def stop_listening(self) -> None:
        for server, _ in self.servers.values():
            server.close()

    async def close(self, grace: float) -> None:
        """Close every connection (``grace`` seconds to finish), then the sockets and their files."""
        await close_all(self.conns, grace)

    async def remove(self) -> None:
        for server, path in self.servers.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
            if path is not None:
                path.unlink(missing_ok=True)
        self.servers.clear()


def remove_stale(path: Path) -> None:
    """A socket left by a daemon that died (the lock says none runs now) is removed."""
    if path.is_socket() or path.is_symlink():
        path.unlink()
    elif path.exists():
        raise DaemonError(f"{path} exists and is not a socket; refusing to replace it")
