"""A hive of several hosts on one machine: N daemons (one per host) on one PostgreSQL database.

Each host is a real ``colibri daemon`` process (hive_harness.Hive) with its own COLIBRI_HOST,
state, run and log directories, and the same COLIBRI_DATABASE_URL.  Tenants are registered on a
host (``tenants.host``); lanes are declared on every daemon.  ``Agent`` is a small client of the
agent API on one socket (register, claim, result), for tests and benchmarks that drive agents
themselves; ``Hive.mother`` starts a real mother skill on any host's socket.

    fleet = Fleet(postgres_server.create_database(), ["a", "b", "c"])
    fleet.start(); fleet.tenant("acme", "a"); fleet.lane("linux")
    ...
    fleet.close()
"""

import contextlib
import http.client
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text

from colibri.services.tenants import TenantService
from colibri.store.db import Store
from tests.integration.as_host import as_host
from tests.integration.hive_harness import Hive, Raw

FLEET_ENV = {"COLIBRI_TASK_POLL_INTERVAL": "0.2"}


class Fleet:
    """N hosts' daemons on one database URL; ``hosts[name]`` is that host's Hive."""

    def __init__(
        self, url: str, names: Sequence[str], extra_env: dict[str, str] | None = None,
        host_env: dict[str, dict[str, str]] | None = None,
    ) -> None:  # fmt: skip
        """``extra_env`` for every host's daemon, ``host_env[name]`` for one."""
        self.url = url
        self.hosts: dict[str, Hive] = {}
        for name in names:
            env = {**FLEET_ENV, "COLIBRI_HOST": name, "COLIBRI_DATABASE_URL": url, **(extra_env or {})}
            self.hosts[name] = Hive(extra_env={**env, **(host_env or {}).get(name, {})})

    def __getitem__(self, name: str) -> Hive:
        return self.hosts[name]

    def start(self) -> None:
        for hive in self.hosts.values():
            hive.start()

    def tenant(self, name: str, host: str, status: str = "active") -> None:
        """Register a tenant living on ``host`` (the service the CLI uses), set its status as spawn
        would, and have that host's daemon open its socket now."""
        store = Store(self.url)
        try:
            with as_host(self.hosts[host].root / "db", host):  # as that host's colibri, with its entry key
                TenantService(store, host).register(name, None, None)
            with store.connect() as conn:
                conn.execute(text("UPDATE tenants SET status = :s WHERE tenant_id = :t"), {"s": status, "t": name})
                conn.commit()
        finally:
            store.close()
        if status == "active" and self.hosts[host].daemon is not None:
            self.hosts[host].admin.open_tenant_socket(name)

    def lane(self, name: str) -> None:
        """Declare a shared lane; every running daemon opens its socket."""
        for hive in self.hosts.values():
            if hive.daemon is not None:
                hive.admin.declare_lane(name)

    def lane_socket(self, host: str, lane: str) -> Path:
        return self.hosts[host].root / "run" / "lanes" / lane / "agent.sock"

    def sql(self, statement: str, **params: Any) -> list[Any]:
        """A query straight on the database (what the daemons wrote, or a fault to make)."""
        store = Store(self.url)
        try:
            with store.connect() as conn:
                result = conn.execute(text(statement), params)
                rows = list(result.all()) if result.returns_rows else []
                conn.commit()
                return rows
        finally:
            store.close()

    def close(self) -> None:
        for hive in self.hosts.values():
            hive.close()


class Agent:
    """An agent speaking the agent API on one socket (a tenant's or a lane's), without a mother."""

    def __init__(self, socket: Path, agent_id: str, capabilities: Sequence[str] = ("echo",), timeout: float = 40):
        self.agent_id = agent_id
        self.socket = socket
        self.capabilities = [{"name": c, "version": "1"} for c in capabilities]
        self.call = Raw(socket, timeout)
        self._stop = threading.Event()
        self._beats: threading.Thread | None = None

    def register(self, heartbeat: bool = True) -> dict[str, Any]:
        """Register; then heartbeat at the interval the daemon answers (a thread of its own)."""
        status, body = self.call("POST", "/v1/agent/register", {"agent_id": self.agent_id,
                                                                "capabilities": self.capabilities})  # fmt: skip
        assert status == 200, (status, body)
        if heartbeat and self._beats is None:
            self._beats = threading.Thread(target=self._beat, args=(float(body["interval"]),), daemon=True)
            self._beats.start()
        return dict(body)

    def _beat(self, interval: float) -> None:
        beats = Raw(self.socket, 10)
        try:
            while not self._stop.wait(interval):
                with contextlib.suppress(OSError, http.client.HTTPException):
                    status, body = beats("POST", "/v1/agent/heartbeat", {"agent_id": self.agent_id})
                    if status == 200:
                        interval = float(body["interval"])
        finally:
            beats.close()

    def claim(self, wait: float = 0) -> tuple[int, Any]:
        """(200, the lease) or (204, None), or the refusal."""
        return self.call("POST", "/v1/tasks/claim", {"agent_id": self.agent_id, "wait": wait})

    def result(self, task: dict[str, Any], ok: bool = True, result: Any = None, **extra: Any) -> tuple[int, Any]:
        body = {"agent_id": self.agent_id, "lease": task["lease"], "ok": ok, "result": result, **extra}
        return self.call("POST", f"/v1/tasks/{task['id']}/result", body)

    def close(self) -> None:
        self._stop.set()
        if self._beats is not None:
            self._beats.join(10)
        self.call.close()


def restart_postgres(server: Any) -> None:
    """``pg_ctl restart -m fast`` of tests/servers/postgres.py's server: every connection is cut."""
    server._run(
        str(server.bindir / "pg_ctl"),
        "-D",
        str(server.data),
        "-l",
        str(server.root / "log"),
        "-m",
        "fast",
        "-w",
        "restart",
    )  # the log, as at start: its output must not hold the pipes
