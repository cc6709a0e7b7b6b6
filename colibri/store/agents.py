"""The agents table: queries only, no business rules (like the tenant repository in repos.py)."""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from colibri.domain import LIVE_AGENT_STATES, AgentState
from colibri.store.models import Agent

GONE = (AgentState.LOST.value, AgentState.LEFT.value)
LIVE = tuple(sorted(s.value for s in LIVE_AGENT_STATES))


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
        for old in self._session.exec(query).all():
            row = self._session.get(Agent, old)
            if row is not None:
                self._session.delete(row)

    def live(self) -> Sequence[Agent]:
        return self._session.exec(select(Agent).where(col(Agent.state).in_(LIVE))).all()

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
            sql = "UPDATE agents SET last_seen_at = ?, state = 'active' WHERE key = ?"
        else:
            rows = [(datetime.fromtimestamp(at, UTC).replace(microsecond=0), key) for key, at in beats]
            sql = "UPDATE agents SET last_seen_at = %s, state = 'active' WHERE key = %s"
        conn.exec_driver_sql(sql, rows)
        return len(rows)
