"""The agents table: queries only, no business rules (like the tenant repository in repos.py)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import Session, col, select

from colibri.domain import LIVE_AGENT_STATES, AgentState, TaskState
from colibri.store.audit_hooks import record
from colibri.store.models import Agent, Task, utcnow

GONE = (AgentState.LOST.value, AgentState.LEFT.value)
LIVE = tuple(sorted(s.value for s in LIVE_AGENT_STATES))
SQLITE_CHUNK = 900  # bound parameters per statement, under SQLite's old default limit of 999


class AgentRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def get(self, key: str) -> Agent | None:
        return self._session.get(Agent, key)

    def add(self, agent: Agent) -> None:
        self._session.add(agent)

    def flush(self) -> None:
        self._session.flush()

    def _owner(self, kind: str, name: str | None) -> Any:
        return (Agent.lane == name) if kind == "lane" else (Agent.tenant_id == name)

    def live_count(self, kind: str, name: str | None) -> int:
        """Active or stale agents of a tenant (``kind`` "tenant") or a lane."""
        query = select(func.count()).select_from(Agent).where(self._owner(kind, name), col(Agent.state).in_(LIVE))
        return int(self._session.exec(query).one())

    def delete_gone_beyond(self, kind: str, name: str | None, keep: int) -> None:
        """Delete the owner's gone agents (left, lost) beyond the ``keep`` most recently changed."""
        query = (
            select(Agent.key).where(self._owner(kind, name), col(Agent.state).in_(GONE))
            .order_by(col(Agent.state_changed_at).desc()).offset(keep)
        )  # fmt: skip
        gone = []
        for old in self._session.exec(query).all():
            row = self._session.get(Agent, old)
            if row is not None:
                self._session.delete(row)
                gone.append(old)
        if gone:
            subject = f"{kind}:{name}"
            record(self._session, "agent.prune", subject, tenant=name if kind == "tenant" else None, agents=gone)

    def live(self, host: str | None = None) -> Sequence[Agent]:
        """Active or stale agents (of ``host``, and those registered before hosts were recorded)."""
        query = select(Agent).where(col(Agent.state).in_(LIVE))
        if host is not None:
            query = query.where(or_(col(Agent.host) == host, col(Agent.host).is_(None)))
        return self._session.exec(query).all()

    def keys_in_state(self, host: str, state: str) -> list[str]:
        query = select(Agent.key).where(col(Agent.host) == host, col(Agent.state) == state)
        return list(self._session.exec(query).all())

    def mark_host_lost(self, host: str) -> list[str]:
        """Every live agent of a lost host becomes ``lost`` (one UPDATE); their keys."""
        query = (
            update(Agent)
            .where(col(Agent.host) == host, col(Agent.state).in_(LIVE))
            .values(state=AgentState.LOST.value, state_changed_at=utcnow())
            .returning(col(Agent.key))
        )
        return sorted(str(k) for k in self._session.execute(query).scalars().all())

    def leave_elsewhere(self, tenant: str, host: str) -> list[str]:
        """The tenant's live agents registered on a host other than ``host`` become ``left`` (one
        UPDATE); their keys."""
        query = (
            update(Agent)
            .where(col(Agent.tenant_id) == tenant, col(Agent.state).in_(LIVE),
                   or_(col(Agent.host).is_(None), col(Agent.host) != host))
            .values(state=AgentState.LEFT.value, state_changed_at=utcnow())
            .returning(col(Agent.key))
        )  # fmt: skip
        return sorted(str(k) for k in self._session.execute(query).scalars().all())

    def tasks_held_by(self, keys: Sequence[str]) -> Sequence[Task]:
        """Running tasks leased to any of these agents, locked for the change that follows."""
        query = select(Task).where(Task.state == TaskState.RUNNING, col(Task.agent_key).in_(list(keys)))
        return self._session.exec(query.order_by(col(Task.id)).with_for_update()).all()

    def tasks_held_on(self, host: str) -> Sequence[Task]:
        """Running tasks leased to any agent of ``host``, locked for the requeue."""
        held = select(Agent.key).where(col(Agent.host) == host)
        query = select(Task).where(Task.state == TaskState.RUNNING, col(Task.agent_key).in_(held))
        return self._session.exec(query.order_by(col(Task.id)).with_for_update()).all()

    def find(self, tenant: str | None = None, state: str | None = None) -> Sequence[Agent]:
        query = select(Agent).order_by(col(Agent.key))
        if tenant is not None:
            query = query.where(Agent.tenant_id == tenant)
        if state is not None:
            query = query.where(Agent.state == state)
        return self._session.exec(query).all()

    def write_heartbeats(self, beats: Sequence[tuple[str, float]]) -> int:
        """Coalesced heartbeats (agent key, wall time) in one batched UPDATE: the driver's own
        executemany, one statement, no ORM objects (a flush may carry thousands)."""
        conn = self._session.connection()
        if conn.dialect.name == "sqlite":  # SQLAlchemy stores SQLite datetimes as this text
            rows: list[tuple[object, str]] = [
                (datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S.000000"), key) for key, at in beats
            ]
            sql = "UPDATE agents SET last_seen_at = ?, state = 'active' WHERE key = ? AND state IN ('active', 'stale')"
        else:
            rows = [(datetime.fromtimestamp(at, UTC).replace(microsecond=0), key) for key, at in beats]
            sql = (
                "UPDATE agents SET last_seen_at = %s, state = 'active' WHERE key = %s AND state IN ('active', 'stale')"
            )
        conn.exec_driver_sql(sql, rows)
        return len(rows)

    def extend_task_leases(self, keys: Sequence[str], until: float, below: float, since: float = 0.0) -> int:
        """The running tasks of these (live) agents keep their lease: ``lease_expires_at = until``
        where it ends before ``below`` (about once per half lease, not per flush) and not before
        ``since`` (a lease from before this daemon started may be one its agent never received:
        ``release_undelivered`` gives those back).  One statement (SQLite: one per 900 agents)."""
        conn = self._session.connection()
        if conn.dialect.name != "sqlite":  # one array parameter: nothing to compile per key
            sql = (
                "UPDATE tasks SET lease_expires_at = %s WHERE state = 'running' AND lease_expires_at < %s"
                " AND lease_expires_at >= %s AND agent_key = ANY(%s)"
            )
            return int(conn.exec_driver_sql(sql, (until, below, since, list(keys))).rowcount)
        step, written = SQLITE_CHUNK, 0
        for start in range(0, len(keys), step):
            query = (
                update(Task)
                .where(col(Task.state) == TaskState.RUNNING.value, col(Task.lease_expires_at) < below,
                       col(Task.lease_expires_at) >= since, col(Task.agent_key).in_(list(keys[start : start + step])))
                .values(lease_expires_at=until)
            )  # fmt: skip
            written += int(self._session.execute(query).rowcount)  # type: ignore[attr-defined]
        return written
