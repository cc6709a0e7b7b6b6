"""Routing tasks to agents: waiting claims, wake-ups, task events, giving back and re-queueing.

The dispatcher owns what lives between the store and the sockets: the agents long-polling for
work (``Waiter``), the events a ``GET /v1/tasks/{id}?wait=`` waits on, and what follows a
requeue (a wake-up, a metric, a log line).  It reaches the store only through ``db`` (the
daemon's one database thread) and the hive service.

Claims are batched: the claims that arrive while one is on the database thread go together in
the next transaction (``claim_many``, at most ``CLAIM_BATCH``), so under load a commit serves many
agents and when idle a claim waits for nothing; results likewise (``finish``: ``finish_many``).
With several hosts on one PostgreSQL, a task queued on another host arrives as a wake-up
(``wake``: notify.py's LISTEN), and ``poll`` looks at the queue every ``task_poll_interval`` while
agents wait, for a NOTIFY that was lost.
"""

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from colibri.daemon.liveness import Registry
from colibri.daemon.logfilter import about
from colibri.daemon.metrics import Metrics
from colibri.daemon.wire import Connection
from colibri.domain import AgentState, TaskState
from colibri.errors import AgentNotFound, ColibriError
from colibri.services.hive.rules import AgentRef, Requeued, Scope
from colibri.services.hive.service import HiveService
from colibri.services.hive.tasks import Finish, task_tenant

log = logging.getLogger("colibri.daemon")
T = TypeVar("T")
Db = Callable[..., Awaitable[Any]]
Claim = tuple[AgentRef, "asyncio.Future[dict[str, Any] | None]", contextvars.Context]
"""A waiting claim: the agent, its answer, and the context (the origin) of the request it serves."""
CLAIM_BATCH = 32
FINISH_BATCH = 64  # results written in one transaction at most (each one fenced UPDATE)


@dataclass
class Waiter:
    """An agent long-polling for work (``gone``: its client closed the connection)."""

    key: str
    event: asyncio.Event = field(default_factory=asyncio.Event)
    gone: Callable[[], bool] = lambda: False
    handed: "asyncio.Future[dict[str, Any] | None] | None" = None
    """A submit is claiming a task for it in the submit's own transaction (``Dispatcher.submit``)."""


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
        self.started = time.time()  # set again on the database's clock when the host lease is taken
        self._checked: set[str] = set()  # agents whose leases from before the start were looked at
        self.announce: Callable[[str], None] | None = None  # tell the other hosts (notify.py), if any
        self._claims: list[Claim] = []
        self._claiming = False
        self._finishes: list[tuple[Finish, asyncio.Future[dict[str, Any]]]] = []
        self._finishing = False

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
                task = await self._claim(agent.ref())
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
                try:
                    await asyncio.wait_for(waiter.event.wait(), remaining)
                except TimeoutError:
                    pass
                finally:
                    if unwatch is not None:
                        unwatch()
                    with contextlib.suppress(ValueError):
                        self.waiters.remove(waiter)
                handed = await asyncio.shield(waiter.handed) if waiter.handed is not None else None
            except asyncio.CancelledError:  # the daemon stops, or the connection's handler went
                if waiter.handed is not None:  # a task a submit claims for it is given back, not lost
                    self._collect(waiter.handed, contextvars.copy_context())
                raise
            if handed is not None:  # a submit claimed it a task in the submit's transaction
                if gone():
                    await self.give_back(handed)
                    return None
                return handed

    def _collect(self, handed: "asyncio.Future[dict[str, Any] | None]", context: contextvars.Context) -> None:
        """A task a submit claims for a waiting agent whose claim call ended before it took it:
        given back once the submit's transaction is done (recorded as its own claimer's act)."""

        def settle(done: "asyncio.Future[dict[str, Any] | None]") -> None:
            if not done.cancelled() and done.exception() is None and (task := done.result()) is not None:
                context.run(self.give_back_later, task)

        handed.add_done_callback(settle)

    async def submit(self, scope: Scope, capability: Any, payload: Any, tenant: Any, key: Any) -> dict[str, Any]:
        """Queue a task (``HiveService.submit``'s arguments), and when an agent of this host that
        may take it is waiting, claim it for that agent in the same transaction
        (``submit_handing``: one commit, one audit append, no wake-up and second turn on the
        database thread); otherwise wake one, and tell the other hosts."""
        waiter = self._waiting_for(scope, capability, tenant)
        if waiter is None:
            task = await self._db(self._hive().submit, scope, capability, payload, tenant, key)
            if task["created"]:
                self.notify(task["tenant"], task["capability"])
            return cast(dict[str, Any], task)
        handed: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        waiter.handed = handed
        agent = self.registry.get(waiter.key)
        assert agent is not None  # _waiting_for found it
        try:
            task, claimed = await self._db(
                self._hive().submit_handing, scope, capability, payload, tenant, key, agent.ref()
            )
        except BaseException:
            handed.set_result(None)  # nothing was written: the agent looks at the queue itself
            waiter.event.set()
            raise
        handed.set_result(claimed)
        waiter.event.set()
        if task["created"] and (claimed is None or claimed["id"] != task["id"]):
            self.notify(task["tenant"], task["capability"])  # it is still queued: as any submit
        return cast(dict[str, Any], task)

    def _waiting_for(self, scope: Scope, capability: Any, tenant: Any) -> Waiter | None:
        """The longest-waiting agent here that may take a task of this submit, whose client is
        there and whose old leases were looked at (``_undelivered``), or None."""
        if not isinstance(capability, str) or (tenant is not None and not isinstance(tenant, str)):
            return None  # the submit refuses it
        try:
            owner = task_tenant(scope, tenant)
        except ColibriError:
            return None
        for waiter in self.waiters:
            if waiter.event.is_set() or waiter.handed is not None or waiter.key not in self._checked or waiter.gone():
                continue
            agent = self.registry.get(waiter.key)
            if agent is not None and self.registry.may_take(agent, owner, capability):
                return waiter
        return None

    async def _claim(self, ref: AgentRef) -> dict[str, Any] | None:
        """One claim, batched with those that arrive while the database thread is busy."""
        future: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        # Its own context: a task it took after it went is given back under its origin (its actor),
        # not that of the claim whose call started the batch (review 12 V10).
        self._claims.append((ref, future, contextvars.copy_context()))
        if not self._claiming:
            self._claiming = True
            drain = asyncio.ensure_future(self._drain_claims())
            drain.add_done_callback(_log_failure)
        return await future

    async def _drain_claims(self) -> None:
        orphans: list[tuple[dict[str, Any], contextvars.Context]] = []  # leased while their claimer went
        batch: list[Claim] = []
        try:
            while self._claims:
                batch, self._claims = self._claims[:CLAIM_BATCH], self._claims[CLAIM_BATCH:]
                try:
                    answers = await self._db(self._hive().claim_many, [ref for ref, _, _ in batch])
                except Exception as exc:
                    for _, future, _ in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future, context), task in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(task)
                    elif task is not None:
                        orphans.append((task, context))
        finally:
            self._claiming = False
            for _, future, _ in batch + self._claims:  # only when this task itself was cancelled (a stop)
                if not future.done():
                    future.cancel()
            self._claims = []
        for task, context in orphans:  # after the batch: a failure here leaves no claim unanswered
            context.run(self.give_back_later, task)  # recorded as its own claimer's act

    async def finish(self, *report: Any) -> dict[str, Any]:
        """Record a result (``HiveService.finish``'s arguments), written in one transaction with the
        results that arrive while the database thread is busy (``finish_many``, at most
        ``FINISH_BATCH``); the answer, or the error, is this result's own."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._finishes.append((cast(Finish, report), future))
        if not self._finishing:
            self._finishing = True
            drain = asyncio.ensure_future(self._drain_finishes())
            drain.add_done_callback(_log_failure)
        return await future

    async def _drain_finishes(self) -> None:
        batch: list[tuple[Finish, asyncio.Future[dict[str, Any]]]] = []
        try:
            while self._finishes:
                batch, self._finishes = self._finishes[:FINISH_BATCH], self._finishes[FINISH_BATCH:]
                try:
                    answers = await self._db(self._hive().finish_many, [report for report, _ in batch])
                except Exception as exc:  # the store: nothing of the batch was written
                    answers = [exc] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if future.done():
                        continue  # its request went (the result is recorded all the same)
                    if isinstance(answer, BaseException):
                        future.set_exception(answer)
                    else:
                        future.set_result(answer)
        finally:
            self._finishing = False
            for _, future in batch + self._finishes:  # only when this task itself was cancelled (a stop)
                if not future.done():
                    future.cancel()
            self._finishes = []

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
        released = await self._db(self._hive().release, int(task["id"]), str(task["lease"]), task.get("fence"))
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
        """A task is queued: wake the longest-waiting agent that may take it (whose client is there),
        and tell the other hosts' daemons (a NOTIFY with the capability only)."""
        self._wake(tenant, capability, 1)
        if self.announce is not None:
            self.announce(capability)

    def _wake(self, tenant: str | None, capability: str, count: int) -> int:
        woken = 0
        for waiter in self.waiters:
            if woken >= count:
                break
            if waiter.event.is_set() or waiter.handed is not None or waiter.gone():
                continue  # (one a submit is claiming for wakes after it, and looks at the queue then)
            agent = self.registry.get(waiter.key)
            if agent is not None and self.registry.may_take(agent, tenant, capability):
                waiter.event.set()
                woken += 1
        return woken

    def wake(self, capability: str) -> None:
        """Another host queued a task of this capability (its tenant is not said): wake this host's
        waiting agents offering it; those that find nothing wait again."""
        for waiter in self.waiters:
            agent = self.registry.get(waiter.key)
            if agent is not None and agent.state == AgentState.ACTIVE and capability in agent.capabilities:
                waiter.event.set()

    def wake_waiting(self) -> None:
        """Wake every waiting claim to look at the queue once (the wake-ups' connection is back)."""
        for waiter in self.waiters:
            waiter.event.set()

    async def poll(self) -> None:
        """The fallback for a lost NOTIFY: which (tenant, capability) the waiting agents offer have
        queued tasks (one query, only while agents wait), and wake the agents that may take them."""
        offered: set[str] = set()
        for waiter in self.waiters:
            agent = self.registry.get(waiter.key)
            if agent is not None and not waiter.event.is_set():
                offered |= agent.capabilities
        if not offered:
            return
        for tenant, capability in await self._db(self._hive().queued_kinds, sorted(offered)):
            self._wake(tenant, capability, len(self.waiters))

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
