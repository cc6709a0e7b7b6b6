"""Children (issue 14): an agent's request for a child, the child's tenant, what its parent sees.

A request comes from the daemon's agent socket: the parent is the socket's tenant, never what
the body says.  The spawn policy decides (services/policy: evaluate, reserve and record in one
transaction; a denial is returned, not raised); an allowed request becomes a tenant of its own,
its id chosen here (ids.py), linked to its parent (``tenants.parent``), provisioned from its
lineage's root collection (the blast radius stays one collection), with the parent's tier and
skill restrictions (``inherit``) and capabilities the parent itself holds.  The spawn runs in
``colibri spawn-child`` (services/children/spawner.py), started by the daemon; this module never
waits on a jail.
"""

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from colibri.domain import TenantStatus, capabilities_from_specs
from colibri.errors import ColibriError, InvalidInput, NotFound, PolicyDenied, StoreError, TenantExists
from colibri.services.children.ids import ATTEMPTS, choose_child_id
from colibri.store.audit_hooks import record
from colibri.store.children import ChildRepo
from colibri.store.db import Store

if TYPE_CHECKING:
    from sqlmodel import Session

    from colibri.services.policy.service import Decision, SpawnPolicyService

PARENT_CAPABILITIES = "parent-capabilities"
PARENT_SKILLS = "parent-skills"
MAX_LISTED = 1000  # children shown to a parent (a policy allows at most 1000)


@dataclass(frozen=True)
class Ask:
    """What an agent asked for, checked and bounded by the route (daemon/children.py)."""

    agent_id: str
    capabilities: tuple[str, ...]  # NAME or NAME@VERSION; none: the parent's own
    template: str | None
    skills: tuple[str, ...]
    host: str | None


@dataclass(frozen=True)
class Answer:
    allowed: bool
    rule: str
    reason: str
    child: str | None = None
    reservation: str | None = None
    depth: int = 0


class ChildView(TypedDict):
    """A child as its parent sees it (GET /v1/children): its id, state and step, never its error's text."""

    child: str
    parent: str
    status: str
    spawn_step: str | None
    host: str
    template: str | None
    capabilities: list[str]
    reservation: str | None
    reservation_state: str | None
    created_at: str | None
    failed: bool


def inherit(session: "Session", parent: str, child: str) -> None:
    """Copy what the parent's lineage restricts onto the child: its tier (the child's skills are a
    subset of the parent's installed ones, checked in ``ChildService.ask``)."""
    from colibri.store.models import Tenant

    source, target = session.get(Tenant, parent), session.get(Tenant, child)
    if source is not None and target is not None:
        target.tier = source.tier


class ChildService:
    def __init__(self, store: Store, policy: "SpawnPolicyService", host: str) -> None:
        self._store = store
        self._policy = policy
        self._host = host

    def ask(self, parent: str, ask: Ask, *, actor: str) -> Answer:
        """Decide, then (allowed) register the child's tenant bound to its reservation.  The
        decision is the policy's, recorded before anything acts; a child that cannot be made
        releases its reservation at once (the sweep would, later)."""
        from colibri.services.policy.service import ChildRequest

        if ask.host is not None and ask.host != self._host:  # before the policy: nothing to decide
            raise InvalidInput(f"children are made on this daemon's host ({self._host}) only")
        host = None  # the parent's own host: what the policy's host rule calls colibri's placement
        held = self._parent_capabilities(parent)
        capabilities = ask.capabilities or held
        names = tuple(spec.partition("@")[0] for spec in capabilities)
        held_names = {spec.partition("@")[0] for spec in held}  # a version asked for must be the parent's own
        beyond = sorted(spec for spec in capabilities if spec not in held and ("@" in spec or spec not in held_names))
        if beyond:  # a child holds a subset of its parent's own: denied, and recorded as one
            reason = f"the parent does not hold {', '.join(beyond)}: a child holds a subset of its parent's"
            self._deny(parent, ask, PARENT_CAPABILITIES, reason, actor)
            return Answer(False, PARENT_CAPABILITIES, reason)
        installed = self._parent_skills(parent)
        foreign = sorted({s.partition("@")[0] for s in ask.skills} - installed)
        if foreign:  # a child's skills are a subset of those installed for its parent
            reason = f"the parent has no skill {', '.join(foreign)} installed: a child gets a subset of its parent's"
            self._deny(parent, ask, PARENT_SKILLS, reason, actor)
            return Answer(False, PARENT_SKILLS, reason)
        request = ChildRequest(parent, ask.agent_id, names, ask.template, ask.skills, host)
        try:
            decision = self._policy.decide(request, actor=actor)
        except PolicyDenied as exc:  # its entry could not be written: denied, nothing reserved
            return Answer(False, exc.rule, exc.message)
        if not decision.allowed or decision.reservation is None:
            return Answer(False, decision.rule, decision.reason, depth=decision.depth)
        try:
            child = self._register(parent, ask, capabilities, decision)
        except Exception as exc:
            why = type(exc).__name__ if not isinstance(exc, ColibriError) else exc.message[:150]
            self._policy.release(decision.reservation, why=f"child not registered: {why}")
            raise
        return Answer(True, decision.rule, decision.reason, child, decision.reservation, decision.depth)

    def _deny(self, parent: str, ask: Ask, rule: str, reason: str, actor: str) -> None:
        with self._store.session() as session:
            record(session, "child.deny", f"tenant:{parent}", tenant=parent, outcome="refused", actor=actor, rule=rule,
                   reason=reason, agent=ask.agent_id, capabilities=list(ask.capabilities))  # fmt: skip

    def _parent_capabilities(self, parent: str) -> tuple[str, ...]:
        from colibri.store.models import Tenant

        with self._store.session() as session:
            row = session.get(Tenant, parent)
            caps = json.loads(row.capabilities or "[]") if row is not None else []
        return tuple(f"{c['name']}@{c['version']}" for c in caps)

    def _parent_skills(self, parent: str) -> set[str]:
        from colibri.store.skills import SkillRepo

        with self._store.session() as session:
            return {skill.name for skill in SkillRepo(session).installed(parent)}

    def _register(self, parent: str, ask: Ask, capabilities: tuple[str, ...], decision: "Decision") -> str:
        """The child's tenant row, bound to the reservation, in one transaction; a drawn id that
        another transaction took meanwhile is drawn again."""
        from colibri.store.models import Tenant
        from colibri.store.repos import TenantRepo

        caps = capabilities_from_specs(list(capabilities))
        assert decision.reservation is not None
        for _ in range(ATTEMPTS):
            try:
                with self._store.session() as session:
                    repo, children = TenantRepo(session), ChildRepo(session)
                    row = repo.get_for_update(parent)
                    if row is None or row.status == TenantStatus.REMOVED:
                        raise NotFound(f"tenant not found: {parent}")
                    root = children.root_of(parent)
                    source = session.get(Tenant, root)
                    child = choose_child_id(repo.ids())
                    tenant = Tenant(
                        tenant_id=child,
                        jail_name=child,
                        collection_name=None if source is None else source.collection_name,
                        host=self._host,
                        status=TenantStatus.REGISTERED,
                        template=ask.template,
                        capabilities=json.dumps(caps),
                        parent=parent,
                    )
                    repo.add(tenant, audit="child.register")
                    record(session, "child.bind", f"tenant:{child}", tenant=child, parent=parent, root=root,
                           reservation=decision.reservation, agent=ask.agent_id, depth=decision.depth)  # fmt: skip
                    inherit(session, parent, child)
                self._policy.bind(decision.reservation, child)
                return child
            except StoreError as exc:
                if "UNIQUE" not in str(exc).upper() and "DUPLICATE" not in str(exc).upper():
                    raise
        raise TenantExists(f"no free child id after {ATTEMPTS} tries")

    # ---- what a parent sees -------------------------------------------------------------------

    def children(self, parent: str) -> list[ChildView]:
        with self._store.session() as session:
            repo = ChildRepo(session)
            rows = repo.children_of(parent, include_removed=True)[-MAX_LISTED:]
            return [_view(t, repo.reservation_of(t.tenant_id)) for t in rows]

    def child(self, parent: str, child: str) -> ChildView:
        from colibri.store.models import Tenant

        with self._store.session() as session:
            row = session.get(Tenant, child)
            if row is None or row.parent != parent:  # another's child is no more findable than none
                raise NotFound(f"no child {child} of tenant {parent}")
            return _view(row, ChildRepo(session).reservation_of(child))


def _view(tenant: Any, reservation: dict[str, Any] | None) -> ChildView:
    caps = json.loads(tenant.capabilities or "[]")
    return ChildView(
        child=tenant.tenant_id,
        parent=tenant.parent,
        status=tenant.status,
        spawn_step=tenant.spawn_step,
        host=tenant.host,
        template=tenant.template,
        capabilities=[f"{c['name']}@{c['version']}" for c in caps],
        reservation=None if reservation is None else reservation["id"],
        reservation_state=None if reservation is None else reservation["state"],
        created_at=tenant.created_at.isoformat() if tenant.created_at else None,
        failed=tenant.status == TenantStatus.FAILED or tenant.last_error is not None,
    )
