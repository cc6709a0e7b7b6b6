"""What each tenant holds in the store, kept in memory: cheap limit checks, and retention.

The daemon's database thread is the only writer of tasks, so the counts read once per tenant
stay right as long as every change goes through ``Ledger.session()``: a change noted inside it is
applied when the transaction commits (and dropped when it rolls back); then a tenant past its
finished-task caps is pruned.

On a shared store (PostgreSQL: every host's daemon writes the same tasks, issue 11) the kept
counts miss the other hosts' changes, so a limit is checked on counts read in the submit's own
transaction, and kept counts older than ``SHARED_USAGE_SECONDS`` are read again before use.
"""

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlmodel import Session

from colibri.services.hive.rules import FINISHED, PRUNE_BATCH, Policy
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.models import Task, utcnow
from colibri.store.tasks import TaskRepo

SHARED_USAGE_SECONDS = 5.0
SYNC_SECONDS = 1.0
"""Judging expiry (another host's lease), the database's clock is read again if older than this."""


@dataclass
class Usage:
    """What one tenant (None: the operator) holds in the store: its unfinished tasks and their
    payload bytes, its finished tasks and their payload + result bytes."""

    queued: int = 0
    queued_bytes: int = 0
    finished: int = 0
    finished_bytes: int = 0


@dataclass
class _Pending:
    """Usage changes of the open transaction, applied once it commits."""

    deltas: list[tuple[str | None, int, int, int, int]] = field(default_factory=list)


class Ledger:
    """The store, the policy and the kept usage, shared by the hive's agent and task rules."""

    def __init__(self, store: Store, policy: Policy, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self._usage: dict[str | None, Usage] = {}
        self._read_at: dict[str | None, float] = {}  # when each kept usage was read (a shared store)
        self._pending: _Pending | None = None
        self.shared = store.engine.dialect.name != "sqlite"  # other hosts' daemons write tasks too

    def now(self) -> float:
        """Now on the database's clock: what every lease is written and judged by, on every host
        (review R3; ``clock`` is this host's own, for what only this daemon compares)."""
        return self.store.clock()

    def sync_clock(self, max_age: float = 0.0) -> None:
        """Read the database's clock again (on the database thread) unless read ``max_age`` s ago."""
        self.store.sync_clock(max_age)

    def forget(self, tenant: str | None) -> None:
        """Drop a tenant's kept usage: the next use reads it from the store."""
        self._usage.pop(tenant, None)
        self._read_at.pop(tenant, None)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A store session whose usage changes are applied when it commits (and dropped when it
        rolls back); then tenants past their finished-task caps are pruned."""
        self._pending = pending = _Pending()
        try:
            with self.store.session() as session:
                yield session
        finally:
            self._pending = None
        over = set()
        for tenant, queued, queued_bytes, finished, finished_bytes in pending.deltas:
            usage = self._usage.get(tenant)
            if usage is None:
                continue  # read whole from the store when it is first needed
            usage.queued += queued
            usage.queued_bytes += queued_bytes
            usage.finished += finished
            usage.finished_bytes += finished_bytes
            if self._over_retention(usage):
                over.add(tenant)
        for tenant in over:
            self.prune(tenant)

    def note(self, tenant: str | None, queued: int, queued_bytes: int, finished: int, finished_bytes: int) -> None:
        assert self._pending is not None, "usage changes only inside session()"
        self._pending.deltas.append((tenant, queued, queued_bytes, finished, finished_bytes))

    def note_finished(self, task: Task) -> None:
        payload = len(task.payload)
        self.note(task.tenant_id, -1, -payload, 1, payload + len(task.result or ""))

    def usage(self, tenant: str | None, session: Session | None = None) -> Usage:
        """The tenant's usage; read from the store the first time (one query per tenant)."""
        if self.shared and self.clock() - self._read_at.get(tenant, 0.0) > SHARED_USAGE_SECONDS:
            self.forget(tenant)
        usage = self._usage.get(tenant)
        if usage is None:
            usage = Usage()
            self._read_at[tenant] = self.clock()
            if session is None:
                with self.store.session() as own:
                    rows = TaskRepo(own).usage_rows(tenant)
            else:
                rows = TaskRepo(session).usage_rows(tenant)
            for state, count, total, payload in rows:
                if state in FINISHED:
                    usage.finished += int(count)
                    usage.finished_bytes += int(total)
                else:
                    usage.queued += int(count)
                    usage.queued_bytes += int(payload)
            self._usage[tenant] = usage
        return usage

    def queue_full(self, tenant: str | None, size: int = 0) -> str | None:
        """Why a task of ``size`` payload bytes cannot be queued for ``tenant`` (None: it can), from
        the kept usage alone: a refused submit costs the store nothing.  Only known tenants are
        checked here (the daemon calls this off the database thread).  On a shared store only the
        counts read in the submit's transaction decide (another host may have finished tasks)."""
        usage = self._usage.get(tenant)
        if tenant is None or usage is None:
            return None
        if usage.queued >= self.policy.max_queued_tasks:
            return (
                f"tenant {tenant} has {usage.queued} unfinished tasks (tenant_max_queued_tasks "
                f"{self.policy.max_queued_tasks}); wait for some to finish"
            )
        if usage.queued_bytes + size > self.policy.max_queued_bytes:
            return (
                f"tenant {tenant}'s unfinished tasks hold {usage.queued_bytes} payload bytes; this one would "
                f"pass tenant_max_queued_payload_bytes ({self.policy.max_queued_bytes})"
            )
        return None

    def _over_retention(self, usage: Usage) -> bool:
        return usage.finished > self.policy.max_finished_tasks or usage.finished_bytes > self.policy.max_finished_bytes

    def prune(self, tenant: str | None) -> int:
        """Delete the tenant's oldest finished tasks until it is within its finished-task caps."""
        usage = self.usage(tenant)
        deleted = 0
        while self._over_retention(usage):
            with self.store.session() as session:
                tasks = TaskRepo(session)
                rows = tasks.oldest_finished(tenant, 64)
                if not rows:
                    usage.finished = usage.finished_bytes = 0  # the counts were off: nothing is left
                    break
                doomed: list[int] = []
                count, total = usage.finished, usage.finished_bytes
                for task_id, task_size in rows:
                    if count <= self.policy.max_finished_tasks and total <= self.policy.max_finished_bytes:
                        break
                    doomed.append(int(task_id or 0))
                    count, total = count - 1, total - int(task_size)
                tasks.delete(doomed)
                if doomed:
                    subject = f"tenant:{tenant}" if tenant else "operator"
                    record(session, "task.prune", subject, tenant=tenant, tasks=len(doomed), first=min(doomed),
                           last=max(doomed), reason="over the finished-task caps")  # fmt: skip
            usage.finished, usage.finished_bytes = count, max(total, 0)
            deleted += len(doomed)
        return deleted

    def prune_expired(self) -> int:
        """Delete finished tasks older than ``retention_seconds`` (at most PRUNE_BATCH a run)."""
        cutoff = utcnow() - timedelta(seconds=self.policy.retention_seconds)
        with self.session() as session:
            tasks = TaskRepo(session)
            rows = tasks.finished_before(cutoff, PRUNE_BATCH)
            if not rows:
                return 0
            doomed = [int(i or 0) for i, _, _ in rows]
            tasks.delete(doomed)
            record(session, "task.prune", "hive", tasks=len(doomed), first=min(doomed), last=max(doomed),
                   reason="older than the retention")  # fmt: skip
            for _, tenant, task_size in rows:
                self.note(tenant, 0, 0, -1, -int(task_size))
            return len(rows)
