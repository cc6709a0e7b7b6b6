"""The tasks table: queries only, no business rules (like the tenant repository in repos.py)."""

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, Row, bindparam, column, delete, func, literal_column, or_, text, update
from sqlmodel import Session, col, select

from colibri.domain import FINISHED_TASK_STATES, TaskState
from colibri.store.models import Task

FINISHED = tuple(sorted(s.value for s in FINISHED_TASK_STATES))
TASKS = Task.__table__  # type: ignore[attr-defined]


def _owned_by(tenant: str | None) -> Any:
    return col(Task.tenant_id).is_(None) if tenant is None else col(Task.tenant_id) == tenant


def _size() -> Any:
    """A task's payload + result bytes (JSON text is ASCII: its length is its size)."""
    return func.length(Task.payload) + func.coalesce(func.length(Task.result), 0)


class TaskRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, task_id: int, for_update: bool = False) -> Task | None:
        return self._session.get(Task, task_id, with_for_update=for_update)

    def add(self, task: Task) -> None:
        self._session.add(task)
        self._session.flush()

    def usage_rows(self, tenant: str | None) -> Sequence[tuple[str, int, int, int]]:
        """Per state: (state, count, payload + result bytes, payload bytes) of one owner's tasks."""
        query = select(Task.state, func.count(), func.coalesce(func.sum(_size()), 0),
                       func.coalesce(func.sum(func.length(Task.payload)), 0))  # fmt: skip
        return self._session.exec(query.where(_owned_by(tenant)).group_by(col(Task.state))).all()

    def oldest_finished(self, tenant: str | None, limit: int) -> Sequence[tuple[int | None, int]]:
        """(id, payload + result bytes) of one owner's oldest finished tasks."""
        query = select(Task.id, _size()).where(_owned_by(tenant), col(Task.state).in_(FINISHED))
        return self._session.exec(query.order_by(col(Task.id)).limit(limit)).all()

    def finished_before(self, cutoff: datetime, limit: int) -> Sequence[tuple[int | None, str | None, int]]:
        """(id, tenant, payload + result bytes) of finished tasks older than ``cutoff``, oldest first."""
        query = select(Task.id, Task.tenant_id, _size()).where(
            col(Task.finished_at) < cutoff, col(Task.state).in_(FINISHED)
        )
        return self._session.exec(query.order_by(col(Task.finished_at)).limit(limit)).all()

    def delete(self, ids: Sequence[int]) -> None:
        self._session.execute(delete(Task).where(col(Task.id).in_(list(ids))))

    def by_idempotency_key(self, submitted_by: str, key: str) -> Task | None:
        query = select(Task).where(Task.submitted_by == submitted_by, Task.idempotency_key == key)
        return self._session.exec(query).first()

    def next_turn(self, tenant: str | None, capability: str) -> int:
        """The round of a task queued now (``tasks.turn``, migration 0008): one after the newest
        queued task of this tenant (None: the operator's) and capability, else the round at the
        head of that capability's queue, else 0.  Two index probes (``ix_tasks_tenant_turn``,
        ``ix_tasks_lane_order``), the same cost whatever the queue's length."""
        return int(self._session.connection().execute(_next_turn(tenant is None), {"owner": tenant, "cap": capability})
                   .scalar_one())  # fmt: skip

    def claim_next(self, capabilities: Sequence[str], tenant: str | None, values: dict[str, Any]) -> Row[Any] | None:
        """Lease the next queued task of these capabilities in one statement: ``UPDATE ... WHERE
        id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING`` (on SQLite the statement is
        atomic: no row lock to skip), by ``(turn, id)``: on a lane (``tenant`` None) the tenants in
        turn, each one's oldest first (review R14); of ``tenant``, its oldest (its rounds follow its
        submissions).  An index walk to the first queued row either way (``ix_tasks_lane_order``,
        ``ix_tasks_tenant_turn``), never a walk over the finished rows before it.  ``values`` are
        the lease's columns (``LEASE``); the attempt and the fence go up by one.  The task as
        leased, or None."""
        params = {f"new_{name}": value for name, value in values.items()}
        params["caps"] = sorted(capabilities)
        if tenant is not None:
            params["owner"] = tenant
        wide = len(params["caps"]) > 1 and self.many_at_once()  # PostgreSQL: one index walk a capability
        statement = _claim_wide(tenant is not None) if wide else _claim_statement(tenant is not None)
        return self._session.connection().execute(statement, params).first()

    def finish_held(
        self, task_id: int, agent_key: str, lease: str, host: str | None, fence: int | None,
        tenant: str | None, values: dict[str, Any],
    ) -> Row[Any] | None:  # fmt: skip
        """Record the outcome of a running task in one fenced statement, only while it is leased to
        ``agent_key`` with ``lease`` by a claim of ``host`` (or one before issue 11, naming none),
        with ``fence`` when given and of ``tenant`` when given; ``values`` are ``OUTCOME``'s
        columns.  The task as finished, or None (not held so: the caller looks at why)."""
        params = {f"new_{name}": value for name, value in values.items()}
        params.update(task=task_id, agent=agent_key, lease=lease, claimed_by=host)
        if fence is not None:
            params["held_fence"] = fence
        if tenant is not None:
            params["owner"] = tenant
        query = _finish_statement(fence is not None, tenant is not None)
        return self._session.connection().execute(query, params).first()

    def many_at_once(self) -> bool:
        """Several claims (or results) in one statement: PostgreSQL (arrays, ``unnest``)."""
        return bool(self._session.get_bind().dialect.name == "postgresql")

    def claim_several(
        self, capabilities: Sequence[str], tenant: str | None, leases: Sequence[tuple[str, str, float]],
        host: str | None, stamp: datetime,
    ) -> list[Row[Any]]:  # fmt: skip
        """``claim_next`` for several agents of one kind in one statement (PostgreSQL): the next
        queued tasks in ``claim_next``'s order, locked (SKIP LOCKED), the first to the first
        ``(agent key, lease, lease end)`` of ``leases``; the tasks leased, in that order (fewer than
        asked when the queue ran short)."""
        agents, tokens, ends = (list(column) for column in zip(*leases, strict=True))
        params: dict[str, Any] = {"agents": agents, "tokens": tokens, "ends": ends, "caps": sorted(capabilities),
                                  "k": len(leases), "claimed_by": host, "stamp": stamp}  # fmt: skip
        if tenant is not None:
            params["owner"] = tenant
        statement = _claim_several(tenant is not None, min(2, len(params["caps"])))
        rows = self._session.connection().execute(statement, params).all()
        return sorted(rows, key=lambda row: int(row.n))

    def finish_several(self, reports: Sequence[tuple[Any, ...]], host: str | None, stamp: datetime) -> list[Row[Any]]:
        """``finish_held`` for several results in one statement (PostgreSQL); ``reports`` are
        ``(task id, agent key, lease, fence, tenant, state, result, error, exit status)``, no task
        twice.  The tasks finished, each with ``n``, its report's index (the others are not held so)."""
        names = ("ids", "agents", "leases", "fences", "owners", "states", "results", "errors", "statuses")
        params: dict[str, Any] = {
            name: list(column) for name, column in zip(names, zip(*reports, strict=True), strict=True)
        }
        params.update(claimed_by=host, stamp=stamp)
        return list(self._session.connection().execute(_FINISH_SEVERAL, params).all())

    def lease_expired(self, now: float) -> Sequence[Task]:
        """Running tasks whose lease ran out, locked; one another daemon is requeueing is skipped."""
        query = select(Task).where(Task.state == TaskState.RUNNING, col(Task.lease_expires_at) < now)
        return self._session.exec(query.order_by(col(Task.id)).with_for_update(skip_locked=True)).all()

    def held_by(self, agent_key: str, expiring_before: float | None = None) -> Sequence[Task]:
        """Running tasks leased to this agent (only those whose lease ends before ``expiring_before``),
        locked for the change that follows."""
        query = select(Task).where(Task.state == TaskState.RUNNING, Task.agent_key == agent_key)
        if expiring_before is not None:
            query = query.where(col(Task.lease_expires_at) < expiring_before)
        return self._session.exec(query.order_by(col(Task.id)).with_for_update()).all()

    def queued_kinds(self, capabilities: Sequence[str]) -> list[tuple[str | None, str]]:
        """(tenant, capability) of queued tasks of these capabilities, once each (the polling
        fallback of the wake-ups)."""
        wanted = col(Task.capability).in_(sorted(capabilities))
        query = select(Task.tenant_id, Task.capability).where(Task.state == TaskState.QUEUED, wanted)
        return sorted(set(self._session.exec(query.distinct()).all()), key=lambda r: (r[0] or "", r[1]))

    def find(self, tenant: str | None, state: str | None, limit: int) -> Sequence[Task]:
        """Newest first."""
        query = select(Task).order_by(col(Task.id).desc()).limit(limit)
        if tenant is not None:
            query = query.where(Task.tenant_id == tenant)
        if state is not None:
            query = query.where(Task.state == state)
        return self._session.exec(query).all()

    def queued_refs(self) -> list[tuple[int, str | None, str]]:
        query = select(Task.id, Task.tenant_id, Task.capability).where(Task.state == TaskState.QUEUED)
        return [(int(i or 0), t, c) for i, t, c in self._session.exec(query).all()]

    def counts(self) -> dict[str, int]:
        rows = self._session.exec(select(Task.state, func.count()).group_by(Task.state)).all()
        return {state: int(n) for state, n in rows}


LEASE = ("agent_key", "lease_token", "lease_expires_at", "host", "claimed_at", "updated_at")
OUTCOME = ("state", "result", "error", "exit_status", "lease_expires_at", "finished_at", "updated_at")


@functools.cache
def _claim_statement(of_tenant: bool) -> Any:
    """Built once per shape (bound parameters): a claim then costs no statement building and no
    cache key (what the ORM spent most of a claim's Python time on)."""
    t = TASKS
    pick = select(t.c.id).where(t.c.state == TaskState.QUEUED, t.c.capability.in_(bindparam("caps", expanding=True)))
    if of_tenant:
        pick = pick.where(t.c.tenant_id == bindparam("owner"))
    pick = pick.order_by(t.c.turn, t.c.id).limit(1).with_for_update(skip_locked=True)
    return (
        update(t)
        .where(t.c.id == pick.scalar_subquery(), t.c.state == TaskState.QUEUED)
        .values(
            state=TaskState.RUNNING,
            attempts=t.c.attempts + 1,
            fence=t.c.fence + 1,
            **{name: bindparam(f"new_{name}") for name in LEASE},
        )
        .returning(*t.c)
    )


def _wide_pick(of_tenant: bool, limit: str) -> str:
    """The next queued ids of several capabilities (PostgreSQL): one index walk a capability (a
    LATERAL pick of each one's first ``limit``), merged by ``(turn, id)``.  One ``ORDER BY turn,
    id`` over ``capability = ANY(...)`` has no index order: it sorted every queued task of them
    (12 ms a claim over 20,000 queued; docs/PERFORMANCE.md).  Up to ``limit`` a capability are
    locked, ``limit`` taken; the rest are free again at the commit (a claim meanwhile skips them)."""
    owner = "AND tenant_id = :owner " if of_tenant else ""
    return (
        "SELECT p.id, p.turn FROM unnest(CAST(:caps AS varchar[])) AS c(cap) CROSS JOIN LATERAL "  # noqa: S608 (constants)
        f"(SELECT id, turn FROM tasks WHERE state = 'queued' AND capability = c.cap {owner}"
        f"ORDER BY turn, id LIMIT {limit} FOR UPDATE SKIP LOCKED) AS p ORDER BY p.turn, p.id LIMIT {limit}"
    )


@functools.cache
def _claim_wide(of_tenant: bool) -> Any:
    """``_claim_statement`` for an agent of several capabilities on PostgreSQL (``_wide_pick``)."""
    lease = ", ".join(f"{name} = :new_{name}" for name in LEASE)
    sql = (
        "UPDATE tasks SET state = 'running', attempts = tasks.attempts + 1, fence = tasks.fence + 1, "  # noqa: S608 (constants)
        f"{lease} WHERE tasks.id = (SELECT id FROM ({_wide_pick(of_tenant, '1')}) AS pick) "
        f"AND tasks.state = 'queued' RETURNING {_returned()}"
    )
    return text(sql).columns(*TASKS.c)


@functools.cache
def _next_turn(operators: bool) -> Any:
    t = TASKS
    queued = (t.c.state == literal_column("'queued'"), t.c.capability == bindparam("cap"))
    owner = t.c.tenant_id.is_(None) if operators else t.c.tenant_id == bindparam("owner")
    mine = select(func.max(t.c.turn) + 1).where(owner, *queued).scalar_subquery()
    head = select(func.min(t.c.turn)).where(*queued).scalar_subquery()
    return select(func.coalesce(mine, head, 0))


@functools.cache
def _finish_statement(with_fence: bool, of_tenant: bool) -> Any:
    t = TASKS
    host: Any = bindparam("claimed_by")
    where = [t.c.id == bindparam("task"), t.c.state == TaskState.RUNNING, t.c.agent_key == bindparam("agent"),
             t.c.lease_token == bindparam("lease"), or_(t.c.host.is_(None), t.c.host == host)]  # fmt: skip
    if with_fence:
        where.append(t.c.fence == bindparam("held_fence"))
    if of_tenant:
        where.append(t.c.tenant_id == bindparam("owner"))
    values = {name: bindparam(f"new_{name}", type_=t.c[name].type) for name in OUTCOME}
    return update(t).where(*where).values(**values).returning(*t.c)


def _returned() -> str:
    return ", ".join(f"tasks.{c.name}" for c in TASKS.c)


@functools.cache
def _claim_several(of_tenant: bool, capabilities: int = 1) -> Any:
    """One statement for several claims of one kind: the next queued ids locked (SKIP LOCKED),
    numbered, joined to the agents' leases by that number (several capabilities: ``_wide_pick``)."""
    owner = "AND tenant_id = :owner " if of_tenant else ""
    if capabilities > 1:
        picked = f"picked AS ({_wide_pick(of_tenant, ':k')}), "
    else:
        picked = (
            "picked AS (SELECT id, turn FROM tasks WHERE state = 'queued' AND capability = "  # noqa: S608 (constants)
            f"ANY(CAST(:caps AS varchar[])) {owner}ORDER BY turn, id LIMIT :k FOR UPDATE SKIP LOCKED), "
        )
    sql = (
        "WITH want AS (SELECT * FROM unnest(CAST(:agents AS varchar[]), CAST(:tokens AS varchar[]), "  # noqa: S608 (constants)
        "CAST(:ends AS double precision[])) WITH ORDINALITY AS w(agent, token, ends, n)), "
        f"{picked}"
        f"numbered AS (SELECT id, row_number() OVER (ORDER BY turn, id) AS n FROM picked) "
        "UPDATE tasks SET state = 'running', attempts = tasks.attempts + 1, fence = tasks.fence + 1, "
        "agent_key = want.agent, lease_token = want.token, lease_expires_at = want.ends, host = :claimed_by, "
        "claimed_at = :stamp, updated_at = :stamp FROM numbered JOIN want ON want.n = numbered.n "
        f"WHERE tasks.id = numbered.id AND tasks.state = 'queued' RETURNING {_returned()}, want.n"
    )
    return text(sql).columns(*TASKS.c, column("n", Integer))


_FINISH_SEVERAL = text(
    "UPDATE tasks SET state = r.state, result = r.result, error = r.error, exit_status = r.status, "  # noqa: S608 (constants)
    "lease_expires_at = NULL, finished_at = :stamp, updated_at = :stamp "
    "FROM (SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:agents AS varchar[]), CAST(:leases AS varchar[]), "
    "CAST(:fences AS bigint[]), CAST(:owners AS varchar[]), CAST(:states AS varchar[]), CAST(:results AS text[]), "
    "CAST(:errors AS varchar[]), CAST(:statuses AS integer[])) WITH ORDINALITY "
    "AS r(id, agent, lease, fence, owner, state, result, error, status, n)) AS r "
    "WHERE tasks.id = r.id AND tasks.state = 'running' AND tasks.agent_key = r.agent AND tasks.lease_token = r.lease "
    "AND (tasks.host IS NULL OR tasks.host = :claimed_by) AND (r.fence IS NULL OR tasks.fence = r.fence) "
    f"AND (r.owner IS NULL OR tasks.tenant_id = r.owner) RETURNING {_returned()}, r.n - 1 AS n"
).columns(*TASKS.c, column("n", Integer))
