"""Deciding an agent's request for a child, and the life of the place it is granted.

``decide`` is one transaction: the requesting tenant's policy row is locked and its rate window
advanced (store/policy.py ``take``), the lineage, the global switch and the tenant's children are
read, the rules evaluated (colibri/policy/rules.py), a reservation inserted when allowed, and the
decision's audit entry appended, all before the commit.  So the entry exists before anything acts
on the decision, and an entry that cannot be written rolls everything back: the caller gets
PolicyDenied, nothing reserved.  A denial is committed (its entry, and its count in the rate
window) and returned, not raised.

A reservation is ``reserved`` until the spawn ends: ``use`` (the child exists) or ``release`` (the
spawn failed).  One whose spawner died expires on the database's clock and ``sweep`` settles it:
``used`` when the child it was bound to exists, else ``released``.  Never leaked, never counted
twice.  A reservation not yet bound to a child expires ``BIND_TTL`` seconds after the decision
(binding follows it within the same request: one still unbound that long is a daemon killed
between the two), a bound one ``reservation_ttl`` seconds after its bind (the spawn's time).
"""

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session

from colibri.errors import ColibriError, NotFound, PolicyDenied, StateConflict
from colibri.policy.rules import Inputs, evaluate
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.policy import PolicyRepo, Reservation

DEFAULT_TTL = 900.0
BIND_TTL = 60.0
"""How long a reservation may stay unbound to a child (the decision and the bind are one request)."""
SWEEP_BATCH = 500


@dataclass(frozen=True)
class ChildRequest:
    """An agent's request for a child.  ``parent`` is the tenant the daemon knows from the socket
    the request came on, never from its body."""

    parent: str
    agent_id: str
    capabilities: tuple[str, ...] = ()
    template: str | None = None
    skills: tuple[str, ...] = ()
    host: str | None = None  # None: colibri places it (the parent's host)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # the rule that decided (colibri/policy/rules.py RULES)
    reason: str  # one operator-readable line
    reservation: str | None  # the reservation's id, when allowed
    depth: int  # the child's depth


class SpawnPolicyService:
    def __init__(
        self, store: Store, *, reservation_ttl: float = DEFAULT_TTL, clock: Callable[[], float] | None = None
    ) -> None:
        self._store = store
        self._ttl = reservation_ttl
        self._clock = clock or store.clock  # the database's clock (store/clock.py)

    # ---- the decision ----------------------------------------------------------------------

    def decide(self, request: ChildRequest, *, actor: str) -> Decision:
        """Evaluate, reserve if allowed, record the decision: one transaction (see the module)."""
        try:
            with self._store.session() as session:
                return self._decide(session, request, actor, self._clock())
        except PolicyDenied:
            raise
        except ColibriError as exc:  # the entry (or the reservation) could not be written
            raise PolicyDenied(
                f"spawn request of {request.parent} denied: its decision could not be recorded, so nothing "
                f"was reserved ({exc})"
            ) from None

    def _decide(self, session: Session, request: ChildRequest, actor: str, now: float) -> Decision:
        repo = PolicyRepo(session)
        taken = repo.take(request.parent, now)  # first: the row lock (see store/policy.py)
        policy, recent = taken if taken is not None else (None, 0)
        forbid, parent, counted = repo.facts(request.parent)
        lineage, broken = repo.lineage(request.parent, (parent,))
        policies = repo.policies(lineage[:-1]) if policy is not None and len(lineage) > 1 else {}
        if policy is not None:
            policies[request.parent] = policy
        children = counted if policy is not None else 0
        inputs = Inputs(
            forbid_all=forbid, lineage=lineage, policies=policies, children=children, recent=recent,
            template=request.template, capabilities=tuple(request.capabilities), skills=tuple(request.skills),
            host=request.host, broken=broken,
        )  # fmt: skip
        verdict = evaluate(inputs)
        reservation = None
        if verdict.allowed:
            reservation = secrets.token_hex(16)
            asked = {
                "template": request.template, "capabilities": list(request.capabilities),
                "skills": list(request.skills), "host": request.host,
            }  # fmt: skip
            held = Reservation(
                reservation, request.parent, request.agent_id[:64], "reserved", None, verdict.depth, asked,
                now, now + min(BIND_TTL, self._ttl), None,
            )  # fmt: skip
            repo.reserve(held, now)
        record(
            session, "policy.decide", f"tenant:{request.parent}", tenant=request.parent,
            outcome="ok" if verdict.allowed else "refused", actor=actor,
            decision="allow" if verdict.allowed else "deny", rule=verdict.rule, reason=verdict.reason,
            agent=request.agent_id, template=request.template, capabilities=list(request.capabilities),
            skills=list(request.skills), host=request.host, depth=verdict.depth, children=children,
            recent=recent, lineage=list(lineage), forbid_all=forbid, reservation=reservation,
        )  # fmt: skip
        return Decision(verdict.allowed, verdict.rule, verdict.reason, reservation, verdict.depth)

    # ---- a reservation's life --------------------------------------------------------------

    def reservation(self, reservation: str) -> Reservation:
        with self._store.session() as session:
            found = PolicyRepo(session).reservation(reservation)
        if found is None:
            raise NotFound(f"spawn reservation not found: {reservation[:64]}")
        return found

    def bind(self, reservation: str, child: str) -> None:
        """The child tenant id colibri chose for this reservation (linked to its parent when its
        row exists already; ``use`` links it otherwise)."""
        with self._store.session() as session:
            repo = PolicyRepo(session)
            found = self._held(repo, reservation)
            now = self._clock()
            if not repo.bind(reservation, child, now, expires=now + self._ttl):
                raise StateConflict(
                    f"spawn reservation {reservation} is {found.state}"
                    + (f", bound to {found.child}" if found.child and found.child != child else "")
                    + "; it cannot be bound to another child"
                )
            repo.set_parent(child, found.parent)
            record(
                session, "policy.bind", f"tenant:{found.parent}", tenant=found.parent,
                reservation=reservation, child=child,
            )  # fmt: skip

    def use(self, reservation: str) -> None:
        """The child spawned: reserved -> used (again: nothing changes)."""
        with self._store.session() as session:
            repo = PolicyRepo(session)
            found = self._held(repo, reservation)
            moved = repo.move(reservation, "reserved", "used", self._clock())
            if moved is None:
                if found.state == "used":
                    return
                raise StateConflict(f"spawn reservation {reservation} was {found.state} ({found.why or '-'})")
            if moved.child is not None:
                repo.set_parent(moved.child, moved.parent)
            record(
                session, "policy.use", f"tenant:{moved.parent}", tenant=moved.parent,
                reservation=reservation, child=moved.child,
            )  # fmt: skip

    def release(self, reservation: str, *, why: str) -> None:
        """The spawn failed: reserved -> released, its place free again (again: nothing changes).
        A used reservation is released with ``retire`` when its child is removed."""
        with self._store.session() as session:
            repo = PolicyRepo(session)
            found = self._held(repo, reservation)
            moved = repo.move(reservation, "reserved", "released", self._clock(), why[:200])
            if moved is None:
                if found.state == "released":
                    return
                raise StateConflict(f"spawn reservation {reservation} is used by {found.child}: retire the child")
            record(
                session, "policy.release", f"tenant:{moved.parent}", tenant=moved.parent,
                reservation=reservation, child=moved.child, why=why,
            )  # fmt: skip

    def retire(self, child: str, *, why: str) -> bool:
        """A child tenant was removed: its reservation (used, or reserved for a spawn not yet run)
        released, its parent's place free at once.  False: it held none (an operator's tenant, or
        retired already)."""
        with self._store.session() as session:
            repo = PolicyRepo(session)
            found = repo.used_by(child)
            if found is None:
                return False
            moved = repo.move(found.id, found.state, "released", self._clock(), why[:200])
            if moved is None:
                return False
            record(
                session, "policy.release", f"tenant:{found.parent}", tenant=found.parent,
                reservation=found.id, child=child, why=why,
            )  # fmt: skip
        return True

    def sweep(self) -> int:
        """Settle the reservations past their expiry: bound to a child that exists -> used, else
        released.  How many were settled (at most SWEEP_BATCH a call)."""
        if self._clock is self._store.clock:  # the database's: read it afresh (store/clock.py)
            self._store.sync_clock(max_age=5.0)
        settled = 0
        with self._store.session() as session:
            repo = PolicyRepo(session)
            now = self._clock()
            for found in repo.expired(now, SWEEP_BATCH):
                status = repo.tenant_status(found.child) if found.child is not None else None
                alive = status is not None and status != "removed"
                after, why = ("used", "expired; its child exists") if alive else ("released", "expired unused")
                moved = repo.move(found.id, "reserved", after, now, why)
                if moved is None:  # settled meanwhile (use/release, another host's sweep)
                    continue
                if alive and found.child is not None:
                    repo.set_parent(found.child, found.parent)
                record(
                    session, "policy.sweep", f"tenant:{found.parent}", tenant=found.parent, actor="daemon",
                    reservation=found.id, child=found.child, state=after, why=why,
                )  # fmt: skip
                settled += 1
        return settled

    @staticmethod
    def _held(repo: PolicyRepo, reservation: str) -> Reservation:
        found = repo.reservation(reservation)
        if found is None:
            raise NotFound(f"spawn reservation not found: {reservation[:64]}")
        return found
