"""The hive's rules: agents, tasks, capability routing, leases and retries (issue 5).

Everything here is blocking and talks to the store; the daemon calls it from one database thread,
so the rules run one at a time.  Who is calling is a ``Scope`` that the daemon derives from the
socket a request came in on, never from the request itself:

* a tenant's agent sees and takes only that tenant's tasks;
* a lane agent (a shared lane the operator declared) takes any tenant's tasks and operator tasks;
* an operator task (no tenant) goes to lane agents only.

Task states: ``queued → running → succeeded | failed``; an expired lease, a lost or re-registered
agent puts a running task back to ``queued`` until ``max_attempts`` claims were spent, then it is
``failed`` with the reason.  Nothing is dropped silently.
"""

import contextlib
import json
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from colibri.domain import TenantStatus, validate_name, validate_tenant_id
from colibri.errors import (
    Conflict,
    InvalidInput,
    LimitExceeded,
    PermissionDenied,
    StateConflict,
    TaskNotFound,
    TenantNotFound,
)
from colibri.settings import Settings
from colibri.store.db import Store
from colibri.store.models import Agent, Lane, Task, Tenant, utcnow

AGENT_STATES = ("active", "stale", "lost", "left")
TASK_STATES = ("queued", "running", "succeeded", "failed")
FINISHED = frozenset({"succeeded", "failed"})
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_RESULT_BYTES = 256 * 1024  # the default of task_max_result_bytes
PRUNE_BATCH = 500  # finished tasks deleted by age per run (the next run takes the rest)
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)
UNFINISHED = ("queued", "running")


class ResultTooLarge(InvalidInput):
    """A task's result beyond ``task_max_result_bytes`` (the API answers 413)."""


def validate_idempotency_key(value: object) -> str | None:
    """None, or 1-128 ASCII letters, digits, '_', '.', ':', '-' (a UUID fits)."""
    if value is None:
        return None
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput("idempotency_key must be 1-128 ASCII letters, digits, '_', '.', ':' or '-'")
    return value


@dataclass(frozen=True)
class Scope:
    """Who is calling, as decided by the socket: the admin socket, a tenant's or a lane's."""

    kind: Literal["admin", "tenant", "lane"]
    name: str | None = None

    def agent_key(self, agent_id: str) -> str:
        if self.kind == "tenant":
            return f"{self.name}/{agent_id}"
        if self.kind == "lane":
            return f"lane:{self.name}/{agent_id}"
        raise PermissionDenied("agents register on a tenant's or a lane's socket, not the admin socket")

    @property
    def tenant(self) -> str | None:
        return self.name if self.kind == "tenant" else None


@dataclass(frozen=True)
class Policy:
    """The liveness and retry numbers, from the settings (reloaded on SIGHUP)."""

    heartbeat_interval: float = 10.0
    heartbeat_rate_limit: float = 200.0
    stale_after: float = 30.0
    lost_after: float = 90.0
    lease_seconds: float = 300.0
    max_attempts: int = 3
    max_agents: int = 32  # live agents per tenant (or lane)
    max_queued_tasks: int = 1000  # unfinished tasks per tenant
    max_queued_bytes: int = 64 * 1024 * 1024  # their payload bytes per tenant
    max_finished_tasks: int = 1000  # finished tasks kept per tenant, the oldest pruned beyond
    max_finished_bytes: int = 64 * 1024 * 1024  # their payload + result bytes per tenant
    retention_seconds: float = 7 * 86400.0  # finished tasks older than this are deleted
    max_result_bytes: int = MAX_RESULT_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> "Policy":
        return cls(
            heartbeat_interval=settings.heartbeat_interval,
            heartbeat_rate_limit=settings.heartbeat_rate_limit,
            stale_after=settings.agent_stale_after,
            lost_after=max(settings.agent_lost_after, settings.agent_stale_after),
            lease_seconds=settings.task_lease_seconds,
            max_attempts=settings.task_max_attempts,
            max_agents=settings.tenant_max_agents,
            max_queued_tasks=settings.tenant_max_queued_tasks,
            max_queued_bytes=settings.tenant_max_queued_payload_bytes,
            max_finished_tasks=settings.tenant_max_finished_tasks,
            max_finished_bytes=settings.tenant_max_finished_bytes,
            retention_seconds=settings.task_retention_seconds,
            max_result_bytes=settings.task_max_result_bytes,
        )

    def base_interval(self, agents: int, scopes: int = 1) -> float:
        """Nomad's rule, per tenant: the host's heartbeat rate is shared fairly between the tenants
        (and lanes) that have live agents, and a tenant's interval grows with its own agents only.

        ``agents`` is the caller's tenant's live agents, ``scopes`` how many tenants have any.  Each
        tenant gets ``rate / scopes`` beats per second, so the fleet stays under the rate limit and
        one tenant's 4,000 agents stretch that tenant's interval, not another's.
        """
        return max(self.heartbeat_interval, agents * max(scopes, 1) / self.heartbeat_rate_limit)

    def next_interval(self, agents: int, rand: Callable[[], float] = random.random, scopes: int = 1) -> float:
        """The interval handed to an agent: the base plus up to 25 % jitter, never below the base
        (so the sum over all agents stays under the rate limit) against thundering herds."""
        return self.base_interval(agents, scopes) * (1.0 + 0.25 * rand())

    def ttls(self, interval: float) -> tuple[float, float]:
        """Seconds without a heartbeat before an agent is stale, and lost.

        Never on the first miss: stale needs at least 2.5 intervals of silence; the grace between
        stale and lost keeps the configured gap (kubelet's lesson: 40 s flapped, 50 s did not).
        """
        stale = max(self.stale_after, 2.5 * interval)
        return stale, stale + (self.lost_after - self.stale_after)


@dataclass(frozen=True)
class AgentRef:
    """What routing needs to know about a live agent."""

    key: str
    tenant: str | None
    lane: str | None
    capabilities: frozenset[str]


@dataclass(frozen=True)
class Requeued:
    task_id: int
    tenant: str | None
    capability: str
    state: str  # queued again, or failed when attempts ran out


@dataclass
class Usage:
    """What one tenant (None: the operator) holds in the store: its unfinished tasks and their
    payload bytes, its finished tasks and their payload + result bytes.  Kept by the service (the
    daemon's database thread is the only writer of tasks), read from the store once per tenant."""

    queued: int = 0
    queued_bytes: int = 0
    finished: int = 0
    finished_bytes: int = 0


@dataclass
class _Pending:
    """Usage changes of the open transaction, applied once it commits."""

    deltas: list[tuple[str | None, int, int, int, int]] = field(default_factory=list)


def encode_json(value: Any, limit: int, what: str, error: type[InvalidInput] = InvalidInput) -> str:
    """Compact JSON, ASCII only (``ensure_ascii``): its length is its size in bytes."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    if len(text) > limit:
        raise error(f"{what} is larger than {limit} bytes ({limit // 1024} KiB)")
    return text


def _owned_by(tenant: str | None) -> Any:
    return col(Task.tenant_id).is_(None) if tenant is None else col(Task.tenant_id) == tenant


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.isoformat().replace("+00:00", "Z")


def _epoch_iso(value: float | None) -> str | None:
    return None if value is None else _iso(datetime.fromtimestamp(value, UTC).replace(microsecond=0))


def agent_public(agent: Agent) -> dict[str, Any]:
    return {
        "key": agent.key,
        "agent_id": agent.agent_id,
        "tenant": agent.tenant_id,
        "lane": agent.lane,
        "capabilities": json.loads(agent.capabilities),
        "mother_version": agent.mother_version,
        "state": agent.state,
        "registered_at": _iso(agent.registered_at),
        "last_seen_at": _iso(agent.last_seen_at),
    }


def task_public(task: Task, full: bool = True) -> dict[str, Any]:
    shown: dict[str, Any] = {
        "id": task.id,
        "tenant": task.tenant_id,
        "capability": task.capability,
        "state": task.state,
        "attempts": task.attempts,
        "max_attempts": task.max_attempts,
        "agent": task.agent_key,
        "error": task.error,
        "exit_status": task.exit_status,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "finished_at": _iso(task.finished_at),
    }
    if full:
        shown["payload"] = json.loads(task.payload)
        shown["result"] = None if task.result is None else json.loads(task.result)
        shown["submitted_by"] = task.submitted_by
        shown["claimed_at"] = _iso(task.claimed_at)
        shown["lease_expires_at"] = _epoch_iso(task.lease_expires_at)
    return shown


class HiveService:
    """Agents and tasks in the store.  Blocking: the daemon runs it on its database thread."""

    def __init__(
        self,
        store: Store,
        policy: Policy,
        clock: Callable[[], float] = time.time,
        token: Callable[[], str] = lambda: secrets.token_hex(16),
    ) -> None:
        self._store = store
        self.policy = policy
        self._clock = clock
        self._token = token
        self._usage: dict[str | None, Usage] = {}
        self._pending: _Pending | None = None

    # ---- per-tenant usage: cheap limit checks, retention ---------------------------------------

    @contextlib.contextmanager
    def _session(self) -> Iterator[Session]:
        """A store session whose usage changes are applied when it commits (and dropped when it
        rolls back); then tenants past their finished-task caps are pruned."""
        self._pending = pending = _Pending()
        try:
            with self._store.session() as session:
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
            self._prune(tenant)

    def _note(self, tenant: str | None, queued: int, queued_bytes: int, finished: int, finished_bytes: int) -> None:
        assert self._pending is not None, "usage changes only inside _session()"
        self._pending.deltas.append((tenant, queued, queued_bytes, finished, finished_bytes))

    def _note_finished(self, task: Task) -> None:
        payload = len(task.payload)
        self._note(task.tenant_id, -1, -payload, 1, payload + len(task.result or ""))

    def usage(self, tenant: str | None, session: Session | None = None) -> Usage:
        """The tenant's usage; read from the store the first time (one query per tenant)."""
        usage = self._usage.get(tenant)
        if usage is None:
            usage = Usage()
            size = func.length(Task.payload) + func.coalesce(func.length(Task.result), 0)
            query = select(Task.state, func.count(), func.coalesce(func.sum(size), 0),
                           func.coalesce(func.sum(func.length(Task.payload)), 0))  # fmt: skip
            query = query.where(_owned_by(tenant)).group_by(col(Task.state))
            if session is None:
                with self._store.session() as own:
                    rows = own.exec(query).all()
            else:
                rows = session.exec(query).all()
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
        checked here (the daemon calls this off the database thread)."""
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

    def _prune(self, tenant: str | None) -> int:
        """Delete the tenant's oldest finished tasks until it is within its finished-task caps."""
        usage = self.usage(tenant)
        deleted = 0
        while self._over_retention(usage):
            with self._store.session() as session:
                size = func.length(Task.payload) + func.coalesce(func.length(Task.result), 0)
                rows = session.exec(
                    select(Task.id, size).where(_owned_by(tenant), col(Task.state).in_(FINISHED))
                    .order_by(col(Task.id)).limit(64)
                ).all()  # fmt: skip
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
                session.execute(delete(Task).where(col(Task.id).in_(doomed)))
            usage.finished, usage.finished_bytes = count, max(total, 0)
            deleted += len(doomed)
        return deleted

    def prune_expired(self) -> int:
        """Delete finished tasks older than ``retention_seconds`` (at most PRUNE_BATCH a run)."""
        cutoff = utcnow() - timedelta(seconds=self.policy.retention_seconds)
        with self._session() as session:
            size = func.length(Task.payload) + func.coalesce(func.length(Task.result), 0)
            rows = session.exec(
                select(Task.id, Task.tenant_id, size).where(
                    col(Task.finished_at) < cutoff, col(Task.state).in_(FINISHED)
                ).order_by(col(Task.finished_at)).limit(PRUNE_BATCH)
            ).all()  # fmt: skip
            if not rows:
                return 0
            session.execute(delete(Task).where(col(Task.id).in_([int(i or 0) for i, _, _ in rows])))
            for _, tenant, task_size in rows:
                self._note(tenant, 0, 0, -1, -int(task_size))
            return len(rows)

    # ---- agents --------------------------------------------------------------------------------

    def register(
        self, scope: Scope, agent_id: str, capabilities: list[dict[str, str]], mother_version: str | None
    ) -> tuple[dict[str, Any], list[Requeued]]:
        """Record (or renew) an agent as active.  A new instance of a known agent cannot finish
        what the old one held, so its running tasks go back to the queue."""
        key = scope.agent_key(validate_name(agent_id, "agent id"))
        with self._session() as session:
            self._check_owner(session, scope)
            agent = session.get(Agent, key)
            now = utcnow()
            if agent is None or agent.state not in ("active", "stale"):
                self._check_agent_room(session, scope)
            if agent is None:
                agent = Agent(key=key, agent_id=agent_id, tenant_id=scope.tenant, state="active")
                agent.lane = scope.name if scope.kind == "lane" else None
            agent.capabilities = json.dumps(capabilities, separators=(",", ":"))
            agent.mother_version = mother_version
            agent.state = "active"
            agent.registered_at = agent.last_seen_at = agent.state_changed_at = now
            session.add(agent)
            requeued = self._requeue_held(session, key, f"agent {key} registered again")
            session.flush()
            return agent_public(agent), requeued

    def _check_agent_room(self, session: Session, scope: Scope) -> None:
        """A tenant (or lane) has at most ``max_agents`` live agents; its gone ones (left, lost) are
        pruned beyond that many, so registering new agent ids forever cannot grow the table."""
        owner = (Agent.lane == scope.name) if scope.kind == "lane" else (Agent.tenant_id == scope.name)
        live = session.exec(
            select(func.count()).select_from(Agent).where(owner, col(Agent.state).in_(("active", "stale")))
        ).one()
        if int(live) >= self.policy.max_agents:
            raise LimitExceeded(
                f"{scope.kind} {scope.name} already has {int(live)} live agents (tenant_max_agents "
                f"{self.policy.max_agents}); deregister one first"
            )
        gone = session.exec(
            select(Agent.key).where(owner, col(Agent.state).in_(("left", "lost")))
            .order_by(col(Agent.state_changed_at).desc()).offset(self.policy.max_agents)
        ).all()  # fmt: skip
        for old in gone:
            row = session.get(Agent, old)
            if row is not None:
                session.delete(row)

    def _check_owner(self, session: Session, scope: Scope) -> None:
        if scope.kind == "tenant":
            tenant = session.get(Tenant, scope.name)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(str(scope.name))
        elif scope.kind == "lane" and session.get(Lane, scope.name) is None:
            raise InvalidInput(f"lane not declared: {scope.name}")

    def deregister(self, key: str) -> list[Requeued]:
        """Mark an agent gone (``left``) and requeue what it held."""
        with self._session() as session:
            agent = session.get(Agent, key)
            if agent is not None:
                agent.state, agent.state_changed_at = "left", utcnow()
            return self._requeue_held(session, key, f"agent {key} deregistered")

    def mark_lost(self, key: str) -> list[Requeued]:
        """An agent missed its heartbeats past the grace: requeue its tasks."""
        return self.set_states([(key, "lost")])

    def set_states(self, changes: Sequence[tuple[str, str]]) -> list[Requeued]:
        """Write agent state changes in one transaction; tasks of agents now ``lost`` are requeued."""
        requeued: list[Requeued] = []
        with self._session() as session:
            now = utcnow()
            for key, state in changes:
                agent = session.get(Agent, key)
                if agent is not None and agent.state != state:
                    agent.state, agent.state_changed_at = state, now
                if state == "lost":
                    requeued += self._requeue_held(session, key, f"agent {key} was lost")
        return requeued

    def flush_heartbeats(self, beats: Sequence[tuple[str, float]]) -> int:
        """Write coalesced heartbeats (agent key, wall time) in one batched UPDATE."""
        if not beats:
            return 0
        # The driver's own executemany: one statement, no ORM objects (a flush may carry thousands).
        with self._store.session() as session:
            conn = session.connection()
            if conn.dialect.name == "sqlite":  # SQLAlchemy stores SQLite datetimes as this text
                rows: list[tuple[object, str]] = [
                    (datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.000000"), key) for key, at in beats
                ]
                sql = "UPDATE agents SET last_seen_at = ?, state = 'active' WHERE key = ?"
            else:
                rows = [(datetime.fromtimestamp(at, UTC).replace(microsecond=0), key) for key, at in beats]
                sql = "UPDATE agents SET last_seen_at = %s, state = 'active' WHERE key = %s"
            conn.exec_driver_sql(sql, rows)
        return len(rows)

    def load_agents(self) -> list[dict[str, Any]]:
        """Agents that may come back (active or stale): the daemon's registry starts from these."""
        with self._store.session() as session:
            query = select(Agent).where(col(Agent.state).in_(("active", "stale")))
            return [agent_public(a) for a in session.exec(query).all()]

    def agents(self, tenant: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        with self._store.session() as session:
            query = select(Agent).order_by(col(Agent.key))
            if tenant is not None:
                query = query.where(Agent.tenant_id == tenant)
            if state is not None:
                query = query.where(Agent.state == state)
            return [agent_public(a) for a in session.exec(query).all()]

    # ---- tasks ---------------------------------------------------------------------------------

    def submit(
        self, scope: Scope, capability: str, payload: Any, tenant: str | None = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """Queue a task.  On an agent socket the tenant is the socket's; naming another is refused.

        With an ``idempotency_key``, a repeat by the same submitter returns the task the first call
        created (``"created": false``); the same key with another capability, tenant or payload is a
        Conflict.  A tenant has at most ``max_queued_tasks`` unfinished tasks holding at most
        ``max_queued_bytes`` of payload (LimitExceeded beyond)."""
        validate_name(capability, "capability")
        tenant = self._task_tenant(scope, tenant)
        idempotency_key = validate_idempotency_key(idempotency_key)
        text = encode_json(payload, MAX_PAYLOAD_BYTES, "the payload")
        submitted_by = "operator" if scope.kind == "admin" else f"{scope.kind}:{scope.name}"
        if idempotency_key is None and (full := self.queue_full(tenant, len(text))) is not None:
            raise LimitExceeded(full)  # known from the kept usage: no store work for a refusal
        with self._session() as session:
            if idempotency_key is not None:
                earlier = session.exec(
                    select(Task).where(Task.submitted_by == submitted_by, Task.idempotency_key == idempotency_key)
                ).first()
                if earlier is not None:
                    if (earlier.capability, earlier.tenant_id, earlier.payload) != (capability, tenant, text):
                        raise Conflict(
                            f"idempotency key {idempotency_key!r} was used for task {earlier.id} with another body"
                        )
                    return {**task_public(earlier), "created": False}
            if tenant is not None:
                found = session.get(Tenant, tenant)
                if found is None or found.status == TenantStatus.REMOVED:
                    raise TenantNotFound(tenant)
                self._check_queue_room(session, tenant, len(text))
            task = Task(
                tenant_id=tenant,
                capability=capability,
                payload=text,
                state="queued",
                max_attempts=self.policy.max_attempts,
                submitted_by=submitted_by,
                idempotency_key=idempotency_key,
            )
            session.add(task)
            session.flush()
            self._note(tenant, 1, len(text), 0, 0)
            return {**task_public(task), "created": True}

    def _check_queue_room(self, session: Session, tenant: str, size: int) -> None:
        """A tenant has at most ``max_queued_tasks`` unfinished tasks holding ``max_queued_bytes``."""
        self.usage(tenant, session)
        full = self.queue_full(tenant, size)
        if full is not None:
            raise LimitExceeded(full)

    @staticmethod
    def _task_tenant(scope: Scope, tenant: str | None) -> str | None:
        if scope.kind == "admin":
            return None if tenant is None else validate_tenant_id(tenant)
        if tenant is not None and tenant != scope.tenant:
            raise PermissionDenied(f"this socket belongs to {scope.kind} {scope.name}; it cannot act for {tenant}")
        return scope.tenant

    def claim(self, agent: AgentRef) -> dict[str, Any] | None:
        """Lease the oldest queued task this agent may take, or return None.

        The update is a compare-and-set on ``state = 'queued'``: a task is never leased twice.
        """
        if not agent.capabilities:
            return None
        with self._store.session() as session:
            query = (
                select(Task)
                .where(Task.state == "queued", col(Task.capability).in_(sorted(agent.capabilities)))
                .order_by(col(Task.id))
                .limit(1)
            )
            if agent.tenant is not None:
                query = query.where(Task.tenant_id == agent.tenant)
            task = session.exec(query.with_for_update(skip_locked=True)).first()
            if task is None:
                return None
            now = self._clock()
            task.state, task.agent_key = "running", agent.key
            task.lease_token, task.lease_expires_at = self._token(), now + self.policy.lease_seconds
            task.attempts += 1
            task.claimed_at = task.updated_at = utcnow()
            session.add(task)
            session.flush()
            shown = task_public(task)
            shown["lease"] = task.lease_token
            shown["lease_seconds"] = self.policy.lease_seconds
            return shown

    def finish(
        self, scope: Scope, key: str, task_id: int, lease: str, ok: bool, result: Any, error: str | None,
        exit_status: int | None,
    ) -> dict[str, Any]:  # fmt: skip
        """Record a task's outcome.  Only the agent holding the current lease may; anything else is
        StateConflict (the lease expired and the task went back to the queue).

        Idempotent: the same agent reporting again with the lease that finished the task (its first
        answer was lost) gets the task as it was recorded, and nothing changes."""
        result_text = encode_json(result, self.policy.max_result_bytes, "the result", ResultTooLarge)
        with self._session() as session:
            task = self._visible(session, scope, task_id, for_update=True)
            if task.state in FINISHED and task.agent_key == key and task.lease_token == lease:
                return task_public(task)
            if task.state != "running" or task.agent_key != key or task.lease_token != lease:
                raise StateConflict(f"task {task_id} is not leased to {key} (its lease expired or it was requeued)")
            task.state = "succeeded" if ok else "failed"
            task.result = result_text
            task.error = None if ok else (error or "failed")[:4000]
            task.exit_status = exit_status
            task.lease_expires_at = None  # the token stays: a repeated report is recognised
            task.finished_at = task.updated_at = utcnow()
            session.add(task)
            session.flush()
            self._note_finished(task)
            return task_public(task)

    def release(self, task_id: int, lease: str) -> bool:
        """Give a leased task back at once, as if never claimed (its lease never reached the agent):
        queued again, the attempt not counted.  False when that lease no longer holds it."""
        with self._store.session() as session:
            task = session.get(Task, task_id, with_for_update=True)
            if task is None or task.state != "running" or task.lease_token != lease:
                return False
            task.state = "queued"
            task.attempts = max(0, task.attempts - 1)
            task.agent_key, task.lease_token, task.lease_expires_at, task.claimed_at = None, None, None, None
            task.updated_at = utcnow()
            session.add(task)
            return True

    def expire_leases(self) -> list[Requeued]:
        """Requeue running tasks whose lease ran out."""
        now = self._clock()
        with self._session() as session:
            query = select(Task).where(Task.state == "running", col(Task.lease_expires_at) < now)
            expired = session.exec(query).all()
            return [self._requeue(session, t, f"lease expired on agent {t.agent_key}") for t in expired]

    def _requeue_held(self, session: Session, key: str, reason: str) -> list[Requeued]:
        held = session.exec(select(Task).where(Task.state == "running", Task.agent_key == key)).all()
        return [self._requeue(session, task, reason) for task in held]

    def _requeue(self, session: Session, task: Task, reason: str) -> Requeued:
        if task.attempts >= task.max_attempts:
            task.state = "failed"
            task.error = f"gave up after {task.attempts} attempts: {reason}"
            task.finished_at = utcnow()
            self._note_finished(task)
        else:
            task.state = "queued"
            task.error = f"requeued: {reason}"
        task.agent_key, task.lease_token, task.lease_expires_at = None, None, None
        task.updated_at = utcnow()
        session.add(task)
        assert task.id is not None
        return Requeued(task.id, task.tenant_id, task.capability, task.state)

    def task(self, scope: Scope, task_id: int) -> dict[str, Any]:
        """One task.  A tenant's socket sees only that tenant's tasks (others are TaskNotFound)."""
        with self._store.session() as session:
            return task_public(self._visible(session, scope, task_id))

    def _visible(self, session: Session, scope: Scope, task_id: int, for_update: bool = False) -> Task:
        task = session.get(Task, task_id, with_for_update=for_update)
        if task is None or (scope.kind == "tenant" and task.tenant_id != scope.name):
            raise TaskNotFound(f"task not found: {task_id}")
        return task

    def tasks(self, tenant: str | None = None, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first, summaries (no payload, no result)."""
        with self._store.session() as session:
            query = select(Task).order_by(col(Task.id).desc()).limit(max(1, min(limit, 1000)))
            if tenant is not None:
                query = query.where(Task.tenant_id == tenant)
            if state is not None:
                query = query.where(Task.state == state)
            return [task_public(t, full=False) for t in session.exec(query).all()]

    def queued(self) -> list[tuple[int, str | None, str]]:
        """(id, tenant, capability) of every queued task: to wake waiting agents after a restart."""
        with self._store.session() as session:
            query = select(Task.id, Task.tenant_id, Task.capability).where(Task.state == "queued")
            return [(int(i or 0), t, c) for i, t, c in session.exec(query).all()]

    def task_counts(self) -> dict[str, int]:
        with self._store.session() as session:
            rows = session.exec(select(Task.state, func.count()).group_by(Task.state)).all()
            counts = dict.fromkeys(TASK_STATES, 0)
            counts.update({state: int(n) for state, n in rows})
            return counts

    # ---- sockets: which tenants and lanes get one --------------------------------------------

    def socket_owners(self) -> tuple[list[str], list[str]]:
        """Active tenants and declared lanes: the daemon opens an agent socket for each."""
        with self._store.session() as session:
            query = select(Tenant.tenant_id).where(Tenant.status == TenantStatus.ACTIVE)
            tenants = list(session.exec(query).all())
            lanes = list(session.exec(select(Lane.name).order_by(col(Lane.name))).all())
            return tenants, lanes

    def tenant_for_socket(self, tenant_id: str) -> str:
        """The spawn pipeline asks for a tenant's socket: any tenant that is not removed may have one."""
        validate_tenant_id(tenant_id)
        with self._store.session() as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None or tenant.status == TenantStatus.REMOVED:
                raise TenantNotFound(tenant_id)
            return tenant_id

    def removed_tenants(self, candidates: Iterable[str]) -> list[str]:
        """Which of these tenants are gone (removed or deleted): their sockets are closed."""
        wanted = list(candidates)
        if not wanted:
            return []
        with self._store.session() as session:
            query = select(Tenant.tenant_id).where(
                col(Tenant.tenant_id).in_(wanted), Tenant.status != TenantStatus.REMOVED
            )
            kept = set(session.exec(query).all())
            return [t for t in wanted if t not in kept]

    def declare_lane(self, name: str) -> bool:
        """Declare a shared lane (idempotent).  Returns True when it is new."""
        validate_tenant_id(name)  # a lane's socket directory follows the tenant rules
        with self._store.session() as session:
            if session.get(Lane, name) is not None:
                return False
            session.add(Lane(name=name))
            return True
