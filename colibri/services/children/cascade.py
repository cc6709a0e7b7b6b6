"""``remove-tenant --cascade``: a parent and every descendant, the deepest first, nothing left.

Each descendant's jail is destroyed (under its own lock: a spawn in flight refuses it, exit 5,
and the cascade stops there, to be run again), then its rows are deleted in one transaction with
its entry: agents, tasks, its policy, its reservations and the ones it asked for, its tenant row
(its audit entries stay: they are the record).  The parent itself is then removed as
``remove-tenant`` removes any tenant (its jail only with ``--destroy-jail``).
"""

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colibri.domain import HAS_JAIL, TenantStatus
from colibri.errors import StateConflict
from colibri.services.lifecycle.layout import agent_lock
from colibri.services.tenants import TenantService
from colibri.store.audit_hooks import record
from colibri.store.children import ChildRepo
from colibri.store.db import Store
from colibri.store.listing import TenantView

if TYPE_CHECKING:
    from colibri.services.policy.service import SpawnPolicyService


class Cascade:
    def __init__(
        self,
        store: Store,
        tenants: TenantService,
        destroy: Callable[[str], Any],
        locks: Path,
        policy: "SpawnPolicyService",
        socket_dir: Callable[[str], Path],
    ) -> None:
        self._store = store
        self._tenants = tenants
        self._destroy = destroy  # Lifecycle.destroy: the jail, on the tenant's host
        self._locks = locks
        self._policy = policy
        self._socket_dir = socket_dir  # run_dir/agents/<tenant> (the daemon closes its socket)

    def remove(self, tenant_id: str, destroy_jail: bool = False, cascade: bool = True) -> tuple[TenantView, list[str]]:
        """Remove ``tenant_id`` and (``cascade``) its descendants; returns the tenant and the
        children removed (the deepest first).  A child removed gives its parent's place back
        (its reservation retired).  Raises TenantNotFound, StateConflict (children without
        ``cascade``, exit 5; the parent's jail without ``destroy_jail``; a lock held)."""
        from colibri.store.models import Tenant

        with self._store.session() as session:
            parent = session.get(Tenant, tenant_id)
            repo = ChildRepo(session)
            if parent is None or parent.status == TenantStatus.REMOVED:
                parent = None  # the tenants service says so (TenantNotFound), as without children
            below = repo.children_of(tenant_id)
            if parent is not None and below and not cascade:
                names = ", ".join(t.tenant_id for t in below[:10]) + (" ..." if len(below) > 10 else "")
                raise StateConflict(
                    f"tenant {tenant_id} has {len(below)} child{'ren' if len(below) > 1 else ''} ({names}); "
                    f"remove them first, or all at once: colibri remove-tenant {tenant_id} --cascade"
                )
            below_all = [] if parent is None else repo.descendants(tenant_id, include_removed=cascade)
            order = [(t.tenant_id, TenantStatus(t.status)) for t in below_all]
            if parent is not None and order and TenantStatus(parent.status) in HAS_JAIL and not destroy_jail:
                raise StateConflict(
                    f"tenant {tenant_id} is {parent.status} and may still have a jail; "
                    f"colibri remove-tenant {tenant_id} --cascade --destroy-jail"
                )
            if order:
                record(session, "tenant.cascade", f"tenant:{tenant_id}", tenant=tenant_id,
                       children=[c for c, _ in order])  # fmt: skip
        for child, status in order:
            if status in HAS_JAIL:
                self._destroy(child)
            if status != TenantStatus.REMOVED:  # a discarded child gave its place back already
                self._policy.retire(child, why=f"removed with {tenant_id} (--cascade)")
            with agent_lock(self._locks, child), self._store.session() as session:
                counts = ChildRepo(session).forget(child)
                record(session, "child.forget", f"tenant:{child}", tenant=child, cascade_of=tenant_id,
                       fields={f"deleted_{table}": n for table, n in counts.items()})  # fmt: skip
            folder = self._socket_dir(child)
            (folder / "agent.sock").unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                folder.rmdir()
        return self._removed(tenant_id, destroy_jail), [c for c, _ in order]

    def _removed(self, tenant_id: str, destroy_jail: bool) -> TenantView:
        removed = self._tenants.remove(tenant_id, destroy_jail=destroy_jail)
        self._policy.retire(tenant_id, why="removed")  # a child removed on its own frees its parent's place
        return removed
