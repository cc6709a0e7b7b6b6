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

import json
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func
from sqlmodel import Session, col, select

from colibri.domain import TenantStatus, validate_tenant_id
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
MAX_RESULT_BYTES = 512 * 1024
MAX_CAPABILITIES = 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", re.ASCII)
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,31}", re.ASCII)
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}", re.ASCII)
UNFINISHED = ("queued", "running")


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


def validate_name(value: object, what: str) -> str:
    """An agent id, capability or lane name: ASCII letters, digits, '_', '.', '-' (max 64)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        shown = repr(value)[:50]
        raise InvalidInput(f"invalid {what} {shown}: use 1-64 ASCII letters, digits, '_', '.', '-'")
    return value


def parse_capabilities(value: object) -> list[dict[str, str]]:
    """``[{"name": "echo", "version": "1"}, ...]``, names unique.  Raises InvalidInput."""
    if not isinstance(value, list) or len(value) > MAX_CAPABILITIES:
        raise InvalidInput(f"capabilities must be a list of at most {MAX_CAPABILITIES} objects")
    seen: dict[str, dict[str, str]] = {}
    for item in value:
        if not isinstance(item, dict):
            raise InvalidInput('each capability is an object {"name": ..., "version": ...}')
        name = validate_name(item.get("name"), "capability name")
        version = item.get("version", "0")
        if not isinstance(version, str) or not _VERSION.fullmatch(version):
            raise InvalidInput(f"invalid version for capability {name}")
        if name in seen:
            raise InvalidInput(f"capability {name} is listed twice")
        seen[name] = {"name": name, "version": version}
    return list(seen.values())


def encode_json(value: Any, limit: int, what: str) -> str:
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    if len(text.encode()) > limit:
        raise InvalidInput(f"{what} is larger than {limit // 1024} KiB")
    return text


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

    # ---- agents --------------------------------------------------------------------------------

    def register(
        self, scope: Scope, agent_id: str, capabilities: list[dict[str, str]], mother_version: str | None
    ) -> tuple[dict[str, Any], list[Requeued]]:
        """Record (or renew) an agent as active.  A new instance of a known agent cannot finish
        what the old one held, so its running tasks go back to the queue."""
        key = scope.agent_key(validate_name(agent_id, "agent id"))
        with self._store.session() as session:
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
        with self._store.session() as session:
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
        with self._store.session() as session:
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
        with self._store.session() as session:
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
                self._check_queue_room(session, tenant, len(text.encode()))
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
            return {**task_public(task), "created": True}

    def _check_queue_room(self, session: Session, tenant: str, size: int) -> None:
        count, total = session.exec(
            select(func.count(), func.coalesce(func.sum(func.length(Task.payload)), 0)).where(
                Task.tenant_id == tenant, col(Task.state).in_(UNFINISHED)
            )
        ).one()
        if int(count) >= self.policy.max_queued_tasks:
            raise LimitExceeded(
                f"tenant {tenant} has {int(count)} unfinished tasks (tenant_max_queued_tasks "
                f"{self.policy.max_queued_tasks}); wait for some to finish"
            )
        if int(total) + size > self.policy.max_queued_bytes:
            raise LimitExceeded(
                f"tenant {tenant}'s unfinished tasks hold {int(total)} payload bytes; this one would pass "
                f"tenant_max_queued_payload_bytes ({self.policy.max_queued_bytes})"
            )

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
        result_text = encode_json(result, MAX_RESULT_BYTES, "the result")
        with self._store.session() as session:
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
        with self._store.session() as session:
            query = select(Task).where(Task.state == "running", col(Task.lease_expires_at) < now)
            expired = session.exec(query).all()
            return [self._requeue(session, t, f"lease expired on agent {t.agent_key}") for t in expired]

    def _requeue_held(self, session: Session, key: str, reason: str) -> list[Requeued]:
        held = session.exec(select(Task).where(Task.state == "running", Task.agent_key == key)).all()
        return [self._requeue(session, task, reason) for task in held]

    @staticmethod
    def _requeue(session: Session, task: Task, reason: str) -> Requeued:
        if task.attempts >= task.max_attempts:
            task.state = "failed"
            task.error = f"gave up after {task.attempts} attempts: {reason}"
            task.finished_at = utcnow()
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
