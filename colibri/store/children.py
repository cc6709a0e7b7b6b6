"""Children (issue 14): the tenants an agent asked for, their lineage, and what a cascade removes.

``tenants.parent`` names the tenant whose agent asked for a child (migration 0010); the quota's
reservations are the spawn policy's (``spawn_reservations``, services/policy).  Queries here, and
the one delete of a destroyed child's rows.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import column, delete, or_, select, table, update
from sqlmodel import Session, col
from sqlmodel import select as select_model

from colibri.domain import TenantStatus
from colibri.store.models import Tenant

MAX_LINEAGE = 16  # deeper than any policy allows (policy.model.MAX_DEPTH): a longer chain is a cycle
_RESERVATIONS = table("spawn_reservations", column("id"), column("parent"), column("child"), column("state"),
                      column("depth"), column("agent_id"), column("request"))  # fmt: skip
_POLICIES = table("spawn_policies", column("tenant_id"))
_TASKS = table("tasks", column("tenant_id"))
_AGENTS = table("agents", column("tenant_id"))
_TENANT_ROWS = table("tenants", column("tenant_id"), column("parent"), column("status"))
_SKILLS = table("tenant_skills", column("tenant_id"))


def unfinished(tenant: Tenant) -> bool:
    """A child whose first spawn never finished: cut short (spawning), or never begun (registered
    without its block of host ids, which its first spawn takes and keeps)."""
    status = TenantStatus(tenant.status)
    return status == TenantStatus.SPAWNING or (status == TenantStatus.REGISTERED and tenant.uid_base is None)


class ChildRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def parent_of(self, tenant_id: str) -> str | None:
        tenant = self._session.get(Tenant, tenant_id)
        return None if tenant is None else tenant.parent

    def root_of(self, tenant_id: str) -> str:
        """The first tenant of ``tenant_id``'s lineage (itself when it has no parent)."""
        current, seen = tenant_id, {tenant_id}
        for _ in range(MAX_LINEAGE):
            parent = self.parent_of(current)
            if parent is None or parent in seen:
                return current
            seen.add(parent)
            current = parent
        return current

    def children_of(self, parent: str, include_removed: bool = False) -> Sequence[Tenant]:
        query = select_model(Tenant).where(Tenant.parent == parent)
        query = query.order_by(col(Tenant.created_at), col(Tenant.tenant_id))
        if not include_removed:
            query = query.where(Tenant.status != TenantStatus.REMOVED)
        return self._session.exec(query).all()

    def descendants(self, tenant_id: str, include_removed: bool = False) -> list[Tenant]:
        """Every live descendant (and removed ones: discarded children), the deepest first (a
        cascade destroys them in this order)."""
        levels: list[list[Tenant]] = []
        frontier, seen = [tenant_id], {tenant_id}
        while frontier and len(levels) < MAX_LINEAGE:
            level = [c for p in frontier for c in self.children_of(p, include_removed) if c.tenant_id not in seen]
            seen.update(c.tenant_id for c in level)
            if level:
                levels.append(level)
            frontier = [c.tenant_id for c in level]
        return [t for level in reversed(levels) for t in level]

    def links(self) -> dict[str, str]:
        """child -> parent for every live tenant that has a parent."""
        query = select_model(Tenant.tenant_id, Tenant.parent).where(
            col(Tenant.parent).is_not(None), Tenant.status != TenantStatus.REMOVED
        )
        return {tenant: parent for tenant, parent in self._session.exec(query).all() if parent is not None}

    def reservation_of(self, child: str) -> dict[str, Any] | None:
        query = select(_RESERVATIONS).where(_RESERVATIONS.c.child == child)
        row = self._session.connection().execute(query).mappings().first()
        return None if row is None else dict(row)

    def reservation(self, reservation_id: str) -> dict[str, Any] | None:
        query = select(_RESERVATIONS).where(_RESERVATIONS.c.id == reservation_id)
        row = self._session.connection().execute(query).mappings().first()
        return None if row is None else dict(row)

    def pending_children(self) -> list[tuple[str, str | None, str | None]]:
        """(child, its reservation's id, its state) for every live child whose reservation is not
        used (reserved: its spawn is due; released or none: it is to be discarded), and every
        child whose reservation is used but whose spawn never finished (``unfinished``: the sweep
        settled it while no spawner ran): what the daemon's loop converges."""
        query = select_model(Tenant).where(col(Tenant.parent).is_not(None), Tenant.status != TenantStatus.REMOVED)
        found = []
        for tenant in self._session.exec(query).all():
            held = self.reservation_of(tenant.tenant_id)
            state = None if held is None else held["state"]
            if state != "used" or unfinished(tenant):
                found.append((tenant.tenant_id, None if held is None else held["id"], state))
        return found

    def detach(self, parent: str) -> int:
        """A removed tenant registered again (another customer, perhaps; refused while it has live
        children): its old incarnation's discarded children are no longer its children, and the
        reservations it made or was made by are gone, so nothing of them shows over its socket or
        in ``policy show``, and no sweep makes it anybody's child again.  How many children were
        detached (their rows and audit entries stay)."""
        connection = self._session.connection()
        # its old grants, and any reservation naming it as a child (so no sweep re-parents it)
        connection.execute(
            delete(_RESERVATIONS).where(or_(_RESERVATIONS.c.parent == parent, _RESERVATIONS.c.child == parent))
        )
        query = update(_TENANT_ROWS).where(_TENANT_ROWS.c.parent == parent, _TENANT_ROWS.c.status == "removed")
        return int(connection.execute(query.values(parent=None)).rowcount)

    def forget(self, child: str) -> dict[str, int]:
        """Delete a destroyed child's rows: its agents, tasks, policy, the reservations it holds or
        asked for, its installed skills, and its tenant row.  The counts deleted, by table (its audit entries stay)."""
        connection = self._session.connection()
        counts = {
            "agents": connection.execute(delete(_AGENTS).where(_AGENTS.c.tenant_id == child)).rowcount,
            "tasks": connection.execute(delete(_TASKS).where(_TASKS.c.tenant_id == child)).rowcount,
            "tenant_skills": connection.execute(delete(_SKILLS).where(_SKILLS.c.tenant_id == child)).rowcount,
            "spawn_policies": connection.execute(delete(_POLICIES).where(_POLICIES.c.tenant_id == child)).rowcount,
            "spawn_reservations": connection.execute(
                delete(_RESERVATIONS).where(or_(_RESERVATIONS.c.child == child, _RESERVATIONS.c.parent == child))
            ).rowcount,
        }
        self._session.expunge_all()
        counts["tenants"] = connection.execute(delete(_TENANT_ROWS).where(_TENANT_ROWS.c.tenant_id == child)).rowcount
        return counts
