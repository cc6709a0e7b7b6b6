"""A tenant moved to another host (``colibri move-tenant``, issue 11): its agents on the old host
are done there, in the move's own transaction (review R11).

The move destroys the tenant's jail on the old host (or forgets it, that host lost), then records
the new host.  Until now the old host's agent rows stayed live until that host's daemon found them
silent past ``agent_lost_after``, and the new host's daemon refused the tenant's mother meanwhile
(the same agent id, live on another host).  Here they become ``left`` at once and the tasks they
held are queued again as if never claimed (the operator stopped them, not the task: the attempt is
not counted); their leases cleared, a late answer from the old host is refused by the fence.
"""

from sqlmodel import Session

from colibri.services.hive.task_audit import requeued
from colibri.services.hive.tasks import unclaim
from colibri.store.agents import AgentRepo
from colibri.store.audit import AuditRepo
from colibri.store.audit_hooks import event


def leave_old_host(session: Session, tenant_id: str, new_host: str) -> list[int]:
    """In the caller's transaction: the tenant's live agents not on ``new_host`` become ``left``;
    the ids of the tasks they held, queued again.  Each agent retired and each task requeued has
    its entry (``agent.leave``, ``task.requeue``), by the move's actor, in the same transaction."""
    agents = AgentRepo(session)
    keys = agents.leave_elsewhere(tenant_id, new_host)
    if not keys:
        return []
    reason = f"tenant {tenant_id} moved to host {new_host}"
    left = [event("agent.leave", f"agent:{key}", tenant=tenant_id, to_host=new_host, reason=reason) for key in keys]
    AuditRepo(session).append_many(left)
    given: list[int] = []
    for task in agents.tasks_held_by(keys):
        agent = unclaim(task)  # whose lease it was
        task.error = f"requeued: {reason}"
        session.add(task)
        assert task.id is not None
        requeued(session, task, agent, reason)
        given.append(task.id)
    return given
