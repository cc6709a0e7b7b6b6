"""The audit entries of the task rules (services/hive/tasks.py): who claimed, finished or requeued
which task.  Each goes in the transaction of its change; a turn's claims, and its results, are
one append (one head update) however many agents they serve, each entry naming its own agent."""

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session

from colibri.audit.entry import Event
from colibri.store.audit import AuditRepo
from colibri.store.audit_hooks import agent_actor, event, record
from colibri.store.models import Task


def claim_event(shown: dict[str, Any], key: str) -> Event:
    """A claim's entry: the task, by the agent that took it, with the claim's fence."""
    return event("task.claim", f"task:{shown['id']}", tenant=shown["tenant"], actor=agent_actor(key), agent=key,
                 fence=shown["fence"])  # fmt: skip


def append_finished(session: Session, reports: Sequence[tuple[Any, ...]], answers: Sequence[object]) -> None:
    """The entries of a turn's recorded results (``finish``'s arguments and each one's answer):
    a task, by its agent; a refused report, or a repeat of one recorded before (its answer says
    ``repeat``, taken out here), changes nothing and has none."""
    events = []
    for report, answer in zip(reports, answers, strict=True):
        if isinstance(answer, dict) and not answer.pop("repeat", False):
            key, ok, exit_status = report[1], report[4], report[7]
            events.append(event("task.complete" if ok else "task.fail", f"task:{answer['id']}",
                                tenant=answer.get("tenant"), outcome="ok" if ok else "failed",
                                actor=agent_actor(key), agent=key, exit_status=exit_status))  # fmt: skip
    AuditRepo(session).append_many(events)


def requeued(session: Session, task: Task, agent: str | None, reason: str, gave_up: bool = False) -> None:
    """A task back in the queue (or given up after its attempts), and why."""
    record(session, "task.fail" if gave_up else "task.requeue", f"task:{task.id}", tenant=task.tenant_id,
           outcome="failed" if gave_up else "ok", agent=agent, attempts=task.attempts, reason=reason)  # fmt: skip
