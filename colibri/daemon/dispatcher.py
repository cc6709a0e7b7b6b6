"""Routing tasks to agents: waiting claims, wake-ups, task events, giving back and re-queueing.

The dispatcher owns what lives between the store and the sockets: the agents long-polling for
work (``Waiter``), the events a ``GET /v1/tasks/{id}?wait=`` waits on, and what follows a
requeue (a wake-up, a metric, a log line).  It reaches the store only through ``db`` (the
daemon's one database thread) and the hive service.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from colibri.daemon.liveness import Registry
from colibri.daemon.logfilter import about
from colibri.daemon.metrics import Metrics
from colibri.daemon.wire import Connection
from colibri.domain import AgentState, TaskState
from colibri.errors import AgentNotFound
from colibri.services.hive.rules import Requeued
from colibri.services.hive.service import HiveService

log = logging.getLogger("colibri.daemon")
T = TypeVar("T")
Db = Callable[..., Awaitable[Any]]


@dataclass
class Waiter:
    """An agent long-polling for work (``gone``: its client closed the connection)."""

    key: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    gone: Callable[[], bool] = lambda: False


class Dispatcher:
    def __init__(
        self, registry: Registry, metrics: Metrics, db: Db, hive: Callable[[], HiveService],
        stopping: Callable[[], bool],
    ) -> None:  # fmt: skip
        self.registry = registry
        self.metrics = metrics
        self._db = db
        self._hive = hive
        self._stopping = stopping
        self.waiters: list[Waiter] = []
        self.task_waits = 0  # GET /v1/tasks/{id}?wait= long-polls in progress
        self._task_events: dict[int, asyncio.Event] = {}
        self.started = time.time()  # the hive service's clock: leases end at its time + lease_seconds
        self._checked: set[str] = set()  # agents whose leases from before the start were looked at

    async def claim(self, key: str, wait: float, conn: Connection | None = None) -> dict[str, Any] | None:
        """Lease a task to agent ``key``, waiting up to ``wait`` seconds for one to arrive.

        When the client closes ``conn`` no task is taken (a waiting claim ends at once), and one
        taken in the meantime is given back at once (without spending an attempt)."""

        def gone() -> bool:
            return conn is not None and conn.closed

        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            agent = self.registry.get(key)
            if agent is None or agent.state in (AgentState.LOST, AgentState.LEFT):
                raise AgentNotFound(f"agent not registered (or lost): {key}; register again")
            if gone():
                return None
            if agent.state == AgentState.ACTIVE:
                if key not in self._checked:
                    await self._undelivered(key)
                task: dict[str, Any] | None = await self._db(self._hive().claim, agent.ref())
                if task is not None:
                    if gone():
                        await self.give_back(task)
                        return None
                    return task
            remaining = deadline - loop.time()
            if remaining <= 0 or self._stopping():
                return None
            waiter = Waiter(key, gone=gone)
            self.waiters.append(waiter)
            unwatch = conn.watch(waiter.event.set) if conn is not None else None
            try:
                await asyncio.wait_for(waiter.event.wait(), remaining)
            except TimeoutError:
                pass
            finally:
                if unwatch is not None:
                    unwatch()
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)

    async def _undelivered(self, key: str) -> None:
        """An agent's first claim since the daemon started: leases it was given before are ones it
        never received (the daemon died between the claim's commit and its answer; an agent claims
        only with its hands free), so they are queued again now, not after their whole lease."""
        given = await self._db(self._hive().release_undelivered, key, self.started)
        self._checked.add(key)
        for item in given:
            self.metrics.inc("colibri_tasks_requeued_total", outcome="undelivered")
            log.warning("task %d given back: its lease was claimed before the daemon restarted and never "
                        "reached agent %s", item.task_id, key, extra=about(item.tenant))  # fmt: skip
            self.notify(item.tenant, item.capability)

    def forget(self, key: str) -> None:
        """The agent registered again or left: nothing it was leased before remains to look at."""
        self._checked.add(key)

    async def give_back(self, task: dict[str, Any]) -> None:
        """A leased task whose answer could not be delivered: queued again at once, no attempt spent."""
        released = await self._db(self._hive().release, int(task["id"]), str(task["lease"]))
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
        for waiter in self.waiters:
            if waiter.event.is_set() or waiter.gone():
                continue
            agent = self.registry.get(waiter.key)
            if agent is not None and self.registry.may_take(agent, tenant, capability):
                waiter.event.set()
                return

    def after_requeue(self, requeued: list[Requeued]) -> None:
        for item in requeued:
            self.metrics.inc("colibri_tasks_requeued_total", outcome=item.state)
            outcome = "requeued" if item.state == TaskState.QUEUED else "failed: no attempts left"
            log.warning("task %d %s", item.task_id, outcome, extra=about(item.tenant))
            if item.state == TaskState.QUEUED:
                self.notify(item.tenant, item.capability)
            else:
                self.finished(item.task_id)

    def task_event(self, task_id: int) -> asyncio.Event:
        return self._task_events.setdefault(task_id, asyncio.Event())

    def finished(self, task_id: int) -> None:
        event = self._task_events.pop(task_id, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """The daemon stops: every waiting claim and task wait returns now."""
        for waiter in self.waiters:
            waiter.event.set()
        for event in self._task_events.values():
            event.set()


def _log_failure(future: "asyncio.Future[None]") -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.warning("giving a task back failed: %s", exc)
