"""``colibri spawn-child CHILD``: a child's spawn, outside the daemon, converging whatever stopped it.

The daemon starts it (daemon/children.py) after an allowed request, and again from its loop for a
child whose reservation is neither used nor released: after a ``kill -9`` of the daemon or of an
earlier spawner, a second run looks first and does only what is missing.  By the reservation's
state:

* ``reserved``: run the ordinary spawn pipeline (jail, ``.env`` from the lineage's collection,
  mother), then ``use`` the reservation; a spawn that fails releases it and discards the child;
  one that finds the child's lock held (another spawner, an operator's command) leaves it be;
* ``released`` (the sweep let it expire, or a failure), or no reservation at all: discard the
  child (its jail destroyed, the tenant removed), so a released quota never leaves a child;
* ``used``: nothing, the child is the operator's like any other tenant; unless its first spawn
  never finished (the sweep settled its reservation while no spawner ran, e.g. a daemon down past
  ``spawn_reservation_ttl``): then the spawn runs, and a failure gives the place back (retire).
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from colibri.domain import HAS_JAIL, TenantStatus
from colibri.errors import ColibriError, StateConflict, TenantNotFound
from colibri.store.audit_hooks import record
from colibri.store.children import ChildRepo, unfinished
from colibri.store.db import Store

if TYPE_CHECKING:
    from colibri.services.policy.service import SpawnPolicyService
    from colibri.services.tenants import TenantService


@dataclass(frozen=True)
class Outcome:
    child: str
    outcome: str  # active, discarded, busy, gone, used
    message: str = ""


class ChildSpawner:
    def __init__(
        self,
        store: Store,
        policy: "SpawnPolicyService",
        spawn: Callable[..., Any],
        tenants: "TenantService",
    ) -> None:
        self._store = store
        self._policy = policy
        self._spawn = spawn  # Lifecycle.spawn
        self._tenants = tenants

    def converge(self, child: str, on_step: Callable[..., None] | None = None) -> Outcome:
        from colibri.store.models import Tenant

        with self._store.session() as session:
            row = session.get(Tenant, child)
            held = ChildRepo(session).reservation_of(child)
            above = session.get(Tenant, row.parent) if row is not None and row.parent is not None else None
            orphan = above is None or above.status == TenantStatus.REMOVED
            if row is not None:
                session.expunge(row)
        state = None if held is None else held["state"]
        if row is None or row.status == TenantStatus.REMOVED or row.parent is None:
            if held is not None and state == "reserved":
                self._policy.release(held["id"], why="the child is gone")
            return Outcome(child, "gone", "no such child")
        if orphan:  # never spawned, nor kept, from a removed parent's collection
            return self.discard(child, f"its parent {row.parent} is removed")
        if state == "used" and not unfinished(row):
            return Outcome(child, "used", f"child {child} is {row.status}")
        if held is None or state not in ("reserved", "used"):
            return self.discard(child, f"its reservation is {state or 'missing'}")
        caps = json.loads(row.capabilities or "[]")
        specs = [f"{c['name']}@{c['version']}" for c in caps]
        skills = asked_skills(held)
        try:
            self._spawn(child, template=row.template, capabilities=specs, skills=skills or None, on_step=on_step)
        except StateConflict as exc:  # its lock is held: another spawner runs it (the loop comes back)
            return Outcome(child, "busy", exc.message)
        except ColibriError as exc:
            if self._has_children(child):  # it cannot go alone: kept, its place held (review17 F2)
                kept = f"(colibri remove-tenant {child} --cascade --destroy-jail removes them all)"
                return Outcome(
                    child, "failed", f"its spawn failed and it has children of its own: {exc.message} {kept}"
                )
            if state == "used":  # settled by the sweep meanwhile: the child's place is given back
                self._policy.retire(child, why=f"spawn failed: {exc.message[:150]}")
            else:
                self._policy.release(held["id"], why=f"spawn failed: {exc.message[:150]}")
            return self.discard(child, f"its spawn failed: {exc.message}")
        if state == "used":
            return Outcome(child, "active", f"child {child} is active")
        try:
            self._policy.use(held["id"])
        except ColibriError as exc:  # released meanwhile (expired while the spawn ran)
            return self.discard(child, f"its reservation could not be used: {exc.message}")
        return Outcome(child, "active", f"child {child} is active")

    def _has_children(self, child: str) -> bool:
        with self._store.session() as session:
            return bool(ChildRepo(session).children_of(child))

    def discard(self, child: str, why: str) -> Outcome:
        """Destroy the child's jail and remove its tenant: a child without a live reservation."""
        from colibri.store.models import Tenant

        with self._store.session() as session:
            row = session.get(Tenant, child)
            status = None if row is None else TenantStatus(row.status)
            record(session, "child.discard", f"tenant:{child}", tenant=child, why=why[:200],
                   status=None if status is None else status.value)  # fmt: skip
        if status is None or status == TenantStatus.REMOVED:
            return Outcome(child, "gone", why)
        try:
            self._tenants.remove(child, destroy_jail=status in HAS_JAIL)
        except StateConflict as exc:
            return Outcome(child, "busy", exc.message)
        except TenantNotFound:  # a cascade forgot it meanwhile
            return Outcome(child, "gone", why)
        return Outcome(child, "discarded", f"child {child} discarded: {why}")


def asked_skills(held: dict[str, Any] | None) -> list[str]:
    """The skills the child's request asked for (its reservation's recorded request): the ones its
    spawn installs, each checked against the parent's installed set when it was asked for."""
    if held is None:
        return []
    request = held.get("request") or "{}"
    values = json.loads(request) if isinstance(request, str) else request
    skills = values.get("skills", []) if isinstance(values, dict) else []
    return [s for s in skills if isinstance(s, str)]
