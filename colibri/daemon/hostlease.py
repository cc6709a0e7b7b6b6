"""The daemon's side of the host lease (issue 11): take a term at start, renew it, declare other
hosts lost, and tell this host's agents to register again after it was itself declared lost.

The rules are colibri/services/hive/hosts.py; this module runs them on the database thread and
acts on the answers in the event loop (the registry, the dispatcher's wake-ups, the log).
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from colibri.daemon.dispatcher import Dispatcher
from colibri.daemon.liveness import Registry
from colibri.daemon.metrics import Metrics
from colibri.services.hive.service import HiveService

log = logging.getLogger("colibri.daemon")
Db = Callable[..., Awaitable[Any]]


class HostLease:
    def __init__(
        self, db: Db, hive: Callable[[], HiveService], registry: Registry, dispatcher: Dispatcher, metrics: Metrics
    ) -> None:
        self._db, self._hive, self._registry = db, hive, registry
        self._dispatcher, self._metrics = dispatcher, metrics

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
        lost = await self._db(self._hive().hosts.start)
        self._back(lost)

    async def renew(self) -> None:
        renewed, lost = await self._db(self._hive().hosts.renew)
        self._metrics.inc("colibri_host_lease_renewals_total", outcome="ok" if renewed else "new_term")
        if not renewed:
            log.warning("this host's lease was lost (it was declared lost or another daemon took its name); "
                        "took term %d", self.term)  # fmt: skip
            self._back(lost)

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
