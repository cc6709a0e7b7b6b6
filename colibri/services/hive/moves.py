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

from colibri.services.hive.tasks import unclaim
from colibri.store.agents import AgentRepo


def leave_old_host(session: Session, tenant_id: str, new_host: str) -> list[int]:
    """In the caller's transaction: the tenant's live agents not on ``new_host`` become ``left``;
    the ids of the tasks they held, queued again."""
    agents = AgentRepo(session)
    keys = agents.leave_elsewhere(tenant_id, new_host)
    if not keys:
        return []
    given: list[int] = []
    for task in agents.tasks_held_by(keys):
        unclaim(task)
        task.error = f"requeued: tenant {tenant_id} moved to host {new_host}"
        session.add(task)
        assert task.id is not None
        given.append(task.id)
    return given
