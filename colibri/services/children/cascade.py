"""``remove-tenant --cascade``: a parent and every descendant, the deepest first, nothing left.

Each descendant's jail is destroyed (under its own lock: a spawn in flight refuses it, exit 5,
and the cascade stops there, to be run again), then its rows are deleted in one transaction with
its entry: agents, tasks, its policy, its reservations and the ones it asked for, its tenant row
(its audit entries stay: they are the record).  The parent itself is then removed as
``remove-tenant`` removes any tenant (its jail only with ``--destroy-jail``).

The lineage may still grow while this runs (an agent of it asks for a child, review13 F1), so the
descendants are listed again until none is left, before and after the parent's removal: once the
parent is removed no child can be registered under it (ChildService locks its row and refuses a
removed one), and a descendant's rows are deleted only under its own row lock with no child of
its own left, so none is orphaned.  A lineage that keeps growing for ``MAX_ROUNDS`` listings is
refused (exit 5: run it again); a removed parent with descendants left behind by a cascade that
stopped is drained by running the same command again.
"""

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colibri.domain import HAS_JAIL, TenantStatus
from colibri.errors import StateConflict, TenantNotFound
from colibri.services.lifecycle.layout import agent_lock
from colibri.services.tenants import TenantService, refuse_live_children
from colibri.store.audit_hooks import record
from colibri.store.children import ChildRepo
from colibri.store.db import Store
from colibri.store.listing import TenantView
from colibri.store.policy import PolicyRepo

if TYPE_CHECKING:
    from colibri.services.policy.service import SpawnPolicyService

MAX_ROUNDS = 8
"""The most times a cascade lists a lineage that grows while it runs before it gives up (exit 5)."""


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
            if parent is not None and not cascade:
                refuse_live_children(session, tenant_id)  # before anything is destroyed
            left = parent is None and cascade and self._leftovers(session, tenant_id)
            below_all = [] if parent is None and not left else repo.descendants(tenant_id, include_removed=cascade)
            order = [(t.tenant_id, TenantStatus(t.status)) for t in below_all]
            if (
                parent is not None
                and (order or cascade)
                and TenantStatus(parent.status) in HAS_JAIL
                and not destroy_jail
            ):
                raise StateConflict(
                    f"tenant {tenant_id} is {parent.status} and may still have a jail; "
                    f"colibri remove-tenant {tenant_id} --cascade --destroy-jail"
                )
            fenced = False
            if cascade and parent is not None:
                # the fence first, with or without children yet: the parent's self-spawn off, so no
                # agent of the lineage (the parent's own, still running, included) gets a child now
                fenced = PolicyRepo(session).deny(tenant_id, by="cascade")
            if order or fenced:
                record(session, "tenant.cascade", f"tenant:{tenant_id}", tenant=tenant_id,
                       children=[c for c, _ in order], self_spawn_turned_off=fenced)  # fmt: skip
        if not cascade or (parent is None and not left):
            return self._removed(tenant_id, destroy_jail), []  # TenantNotFound, or no lineage to drain
        gone = self._drain(tenant_id)
        if left:  # the parent was removed by an earlier cascade that stopped: its view as it is
            return self._tenants.show(tenant_id), gone
        for _ in range(MAX_ROUNDS):
            try:
                removed = self._removed(tenant_id, destroy_jail)
            except TenantNotFound:  # another cascade of the same tenant removed it meanwhile
                removed = self._tenants.show(tenant_id)
            except StateConflict:  # a child granted before the fence registered since: drain it too
                more = self._drain(tenant_id)
                if not more:
                    raise
                gone += more
                continue
            return removed, gone + self._drain(tenant_id)
        raise _growing(tenant_id, gone)

    @staticmethod
    def _leftovers(session: Any, tenant_id: str) -> bool:
        from colibri.store.models import Tenant

        row = session.get(Tenant, tenant_id)
        return row is not None and bool(ChildRepo(session).children_of(tenant_id, include_removed=True))

    def _drain(self, tenant_id: str) -> list[str]:
        """Every descendant of ``tenant_id`` destroyed and forgotten, the deepest first, listed again
        until none is left; the ones removed, in order (StateConflict: it keeps growing)."""
        gone: list[str] = []
        for _ in range(MAX_ROUNDS):
            with self._store.session() as session:
                order = [(t.tenant_id, TenantStatus(t.status)) for t in
                         ChildRepo(session).descendants(tenant_id, include_removed=True)]  # fmt: skip
            if not order:
                return gone
            for child, status in order:
                if not self._forget(tenant_id, child, status):
                    break  # it got a child meanwhile: list the lineage again, that one first
                gone.append(child)
        raise _growing(tenant_id, gone)

    def _forget(self, tenant_id: str, child: str, status: TenantStatus) -> bool:
        """Destroy one descendant's jail and delete its rows; False (nothing deleted) when, under
        its lock, it has a jail again (spawned since the listing: the next listing destroys it) or
        a child of its own (registered since the listing)."""
        from colibri.store.repos import TenantRepo

        why = f"removed with {tenant_id} (--cascade)"
        with self._store.session() as session:
            held = ChildRepo(session).reservation_of(child)
        if held is not None and held["state"] == "reserved":  # its spawn is due: discarded, not run
            self._policy.release(str(held["id"]), why=why)
        elif status != TenantStatus.REMOVED:  # a discarded child gave its place back already
            self._policy.retire(child, why=why)
        if status in HAS_JAIL:
            try:
                self._destroy(child)
            except TenantNotFound:
                return True  # forgotten meanwhile (another cascade)
        with agent_lock(self._locks, child), self._store.session() as session:
            row = TenantRepo(session).get_for_update(child)
            if row is None:
                return True  # forgotten meanwhile (another cascade)
            children = ChildRepo(session)
            if TenantStatus(row.status) in HAS_JAIL or children.children_of(child, include_removed=True):
                return False
            counts = children.forget(child)
            record(session, "child.forget", f"tenant:{child}", tenant=child, cascade_of=tenant_id,
                   fields={f"deleted_{table}": n for table, n in counts.items()})  # fmt: skip
        folder = self._socket_dir(child)
        (folder / "agent.sock").unlink(missing_ok=True)
        with contextlib.suppress(FileNotFoundError):
            folder.rmdir()
        return True

    def _removed(self, tenant_id: str, destroy_jail: bool) -> TenantView:
        removed = self._tenants.remove(tenant_id, destroy_jail=destroy_jail)
        self._policy.retire(tenant_id, why="removed")  # a child removed on its own frees its parent's place
        return removed


def _growing(tenant_id: str, gone: list[str]) -> StateConflict:
    return StateConflict(
        f"tenant {tenant_id}'s lineage kept growing while it was removed ({len(gone)} removed); "
        f"run colibri remove-tenant {tenant_id} --cascade again"
    )
