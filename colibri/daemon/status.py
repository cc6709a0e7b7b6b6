"""``GET /health`` and ``GET /metrics``: what the daemon reports of itself."""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from colibri import __version__
from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.metrics import Metrics, process_gauges, process_health
from colibri.daemon.sockets import Sockets
from colibri.errors import StoreError
from colibri.services.hive.rules import Policy
from colibri.services.hive.service import HiveService


class Status:
    def __init__(
        self, metrics: Metrics, dispatcher: Dispatcher, sockets: Sockets, db: Callable[..., Awaitable[Any]],
        hive: Callable[[], HiveService], policy: Callable[[], Policy], backend: Callable[[], str],
        store_check: Callable[[], None], store_up: Callable[[], bool],
        fleet: Callable[[], dict[str, Any]] = dict,
    ) -> None:  # fmt: skip
        self._metrics, self._dispatcher, self._sockets, self._db = metrics, dispatcher, sockets, db
        self._hive, self._policy, self._backend = hive, policy, backend
        self._store_check, self._store_up, self._fleet = store_check, store_up, fleet
        self._started = time.time()

    async def health(self) -> dict[str, Any]:
        store = "ok"
        tasks: dict[str, int] = {}
        try:
            await asyncio.wait_for(self._db(self._store_check), 3.0)
            tasks = await asyncio.wait_for(self._db(self._hive().task_counts), 3.0)
        except (StoreError, TimeoutError) as exc:
            store = f"unavailable: {exc}" if str(exc) else "unavailable: no answer"
        registry = self._dispatcher.registry
        fleet = self._fleet()
        degraded = store != "ok" or fleet.get("lease", "held") != "held" or bool(fleet.get("outbox"))
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "store": store,
            "backend": self._backend(),
            "agents": registry.counts(),
            "queue_depth": tasks.get("queued"),
            "tasks": tasks,
            "heartbeat_interval": round(self._policy().base_interval(1, registry.scopes + 1), 3),
            "sockets": self._sockets.agent_sockets(),
            "uptime_seconds": round(time.time() - self._started, 1),
            **({"fleet": fleet} if fleet else {}),
            **process_health(),
        }

    async def metrics_text(self) -> str:
        registry = self._dispatcher.registry
        gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
            ("colibri_up", ()): 1,
            ("colibri_info", (("version", __version__),)): 1,
            ("colibri_heartbeats_total", ()): registry.heartbeats,
            ("colibri_heartbeat_interval_seconds", ()): self._policy().base_interval(1, registry.scopes + 1),
            ("colibri_connections", ()): len(self._sockets.conns),
            ("colibri_claims_waiting", ()): len(self._dispatcher.waiters),
            ("colibri_task_waits", ()): self._dispatcher.task_waits,
            ("colibri_agent_sockets", ()): self._sockets.agent_sockets(),
        }
        for state, count in registry.counts().items():
            gauges[("colibri_agents", (("state", state),))] = count
        with contextlib.suppress(StoreError, TimeoutError):
            for state, count in (await asyncio.wait_for(self._db(self._hive().task_counts), 3.0)).items():
                gauges[("colibri_tasks", (("state", state),))] = count
        gauges[("colibri_store_up", ())] = 1 if self._store_up() else 0
        fleet = self._fleet()
        if fleet:
            gauges[("colibri_host_lease_term", ())] = float(fleet["term"])
            gauges[("colibri_host_lease_held", ())] = 1 if fleet["lease"] == "held" else 0
            gauges[("colibri_outbox_records", ())] = float(fleet["outbox"])
            held = fleet["lease"] == "held" and not fleet["outbox"]
            gauges[("colibri_degraded", ())] = 0 if self._store_up() and held else 1
        gauges.update(process_gauges())
        return self._metrics.render(gauges)
