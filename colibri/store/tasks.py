"""The tasks table: queries only, no business rules (like the tenant repository in repos.py)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from colibri.domain import FINISHED_TASK_STATES, TaskState
from colibri.store.models import Task

FINISHED = tuple(sorted(s.value for s in FINISHED_TASK_STATES))


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

    def next_queued(self, capabilities: Sequence[str], tenant: str | None) -> Task | None:
        """The oldest queued task of these capabilities (of ``tenant`` unless None), locked for the
        claim; a task another transaction holds is skipped (PostgreSQL's SKIP LOCKED)."""
        query = (
            select(Task)
            .where(Task.state == TaskState.QUEUED, col(Task.capability).in_(sorted(capabilities)))
            .order_by(col(Task.id))
            .limit(1)
        )
        if tenant is not None:
            query = query.where(Task.tenant_id == tenant)
        return self._session.exec(query.with_for_update(skip_locked=True)).first()

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
