"""The spawn policy's rows (migration 0010): the only SQL of the spawn policy.

A decision's first statement is ``take``: one UPDATE of the requesting tenant's policy row that
advances its rate window and returns the row.  It locks the row until the transaction ends (a
row lock on PostgreSQL; on SQLite the database's one write lock, taken before anything is read,
as HostRepo.hold does), so every decision of that tenant, on any host, runs after the previous
one committed: the count of its reservations read next is exact, and the reservation inserted
after it can never make it pass the maximum (no read-then-write race: the Kubernetes
ResourceQuota over-admission, kubernetes/kubernetes#24494).  A tenant with no row locks nothing:
it is denied, reserving nothing.
"""

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlmodel import Session

from colibri.policy.model import MAX_DEPTH, SpawnPolicy
from colibri.store.models import utcnow

_META = MetaData()
POLICIES = Table(
    "spawn_policies", _META,
    Column("tenant_id", String(64), primary_key=True),
    Column("allowed", Boolean, nullable=False),
    Column("max_children", Integer, nullable=False),
    Column("max_depth", Integer, nullable=False),
    Column("rate", Integer, nullable=False),
    Column("period", Integer, nullable=False),
    Column("templates", Text, nullable=False),
    Column("capabilities", Text, nullable=False),
    Column("skills", Text, nullable=False),
    Column("hosts", Text, nullable=False),
    Column("window_start", Float, nullable=False),
    Column("window_count", Integer, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(140)),
)  # fmt: skip
RESERVATIONS = Table(
    "spawn_reservations", _META,
    Column("id", String(32), primary_key=True),
    Column("parent", String(64), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("child", String(64)),
    Column("depth", Integer, nullable=False),
    Column("request", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("why", String(200)),
)  # fmt: skip
SWITCH = Table(
    "spawn_switch", _META,
    Column("name", String(16), primary_key=True),
    Column("forbid", Boolean, nullable=False),
    Column("changed_at", DateTime, nullable=False),
    Column("changed_by", String(140)),
)  # fmt: skip
TENANTS = Table(
    "tenants", _META,
    Column("tenant_id", String(64), primary_key=True),
    Column("status", String(16)),
    Column("parent", String(64)),
)  # fmt: skip
AUDIT = Table(
    "audit_entries", _META,
    Column("host", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("ts", String(32)),
    Column("tenant", String(64)),
    Column("action", String(64)),
    Column("body", Text),
)  # fmt: skip
COUNTED = ("reserved", "used")
"""The states a tenant's children are counted in (a released reservation frees its place)."""
_KINDS = ("templates", "capabilities", "skills", "hosts")


@dataclass(frozen=True)
class Reservation:
    id: str
    parent: str
    agent_id: str
    state: str
    child: str | None
    depth: int
    request: dict[str, Any]
    created_at: float
    expires_at: float
    why: str | None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "parent": self.parent, "agent_id": self.agent_id, "state": self.state,
            "child": self.child, "depth": self.depth, "request": self.request,
            "created_at": self.created_at, "expires_at": self.expires_at, "why": self.why,
        }  # fmt: skip


@dataclass(frozen=True)
class _Hot:
    take: str
    facts: str
    parent: str
    reserve: str


@functools.cache
def _hot(mark: str) -> _Hot:
    """A decision's statements as the driver's SQL (positional parameters in its style; constants
    only, no value is formatted in)."""
    return _Hot(
        take=(
            "UPDATE spawn_policies SET "  # noqa: S608
            f"window_start = CASE WHEN window_start <= {mark} - period THEN {mark} ELSE window_start END, "
            f"window_count = CASE WHEN window_start <= {mark} - period THEN 1 ELSE window_count + 1 END "
            f"WHERE tenant_id = {mark} RETURNING tenant_id, allowed, max_children, max_depth, rate, period, "
            "templates, capabilities, skills, hosts, window_count"
        ),
        facts=(  # one round trip for three reads (on PostgreSQL each is one: bench/policy_decide.py)
            "SELECT (SELECT forbid FROM spawn_switch WHERE name = 'global'), "  # noqa: S608
            f"(SELECT parent FROM tenants WHERE tenant_id = {mark}), "
            f"(SELECT count(*) FROM spawn_reservations WHERE parent = {mark} AND state IN ('reserved', 'used'))"
        ),
        parent=f"SELECT parent FROM tenants WHERE tenant_id = {mark}",  # noqa: S608
        reserve=(
            "INSERT INTO spawn_reservations (id, parent, agent_id, state, child, depth, request, created_at, "  # noqa: S608
            f"expires_at, updated_at, why) VALUES ({', '.join([mark] * 11)})"
        ),
    )


def _policy(row: Any) -> SpawnPolicy:
    lists = {kind: tuple(json.loads(getattr(row, kind))) for kind in _KINDS}
    return SpawnPolicy(
        tenant=row.tenant_id, allowed=bool(row.allowed), max_children=row.max_children,
        max_depth=row.max_depth, rate=row.rate, period=row.period, **lists,
    )  # fmt: skip


def _reservation(row: Any) -> Reservation:
    return Reservation(
        row.id, row.parent, row.agent_id, row.state, row.child, row.depth, json.loads(row.request),
        row.created_at, row.expires_at, row.why,
    )  # fmt: skip


class PolicyRepo:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._raw: Any = None

    # ---- a decision ------------------------------------------------------------------------

    def take(self, tenant: str, now: float) -> tuple[SpawnPolicy, int] | None:
        """Lock ``tenant``'s policy row, count this request in its rate window (a new window when
        the last began a period ago or more); its policy and the window's count.  None: no policy.
        (Both CASEs read the row as it was: SQL's SET sees the old values.)"""
        cursor = self._cursor()
        cursor.execute(_hot(self._mark).take, (now, now, now, tenant))
        row = cursor.fetchone()
        if row is None:
            return None
        lists = {kind: tuple(json.loads(value)) for kind, value in zip(_KINDS, row[6:10], strict=True)}
        policy = SpawnPolicy(row[0], bool(row[1]), row[2], row[3], row[4], row[5], **lists)
        return policy, int(row[10])

    def facts(self, tenant: str) -> tuple[bool, str | None, int]:
        """What a decision reads besides the policies, in one statement: the global switch,
        ``tenant``'s parent (None: none, or no such tenant) and its children (reserved or used)."""
        cursor = self._cursor()
        cursor.execute(_hot(self._mark).facts, (tenant, tenant))
        forbid, parent, children = cursor.fetchone()
        return bool(forbid), None if parent is None else str(parent), int(children)

    def lineage(self, tenant: str, parent: tuple[str | None] | None = None) -> tuple[tuple[str, ...], bool]:
        """The tenant ids from the root to ``tenant``; True when cut (deeper than MAX_DEPTH, or a loop).
        ``parent``: ``tenant``'s parent, when read already (``facts``)."""
        cursor, query = self._cursor(), _hot(self._mark).parent
        chain = [tenant]
        while len(chain) <= MAX_DEPTH + 1:
            if parent is not None and len(chain) == 1:
                row: Any = parent
            else:
                cursor.execute(query, (chain[-1],))
                row = cursor.fetchone()
            if row is None or row[0] is None:
                return tuple(reversed(chain)), False
            if row[0] in chain:
                return tuple(reversed(chain)), True
            chain.append(str(row[0]))
        return tuple(reversed(chain)), True

    def policies(self, tenants: Sequence[str]) -> dict[str, SpawnPolicy]:
        if not tenants:
            return {}
        rows = self._session.execute(select(POLICIES).where(POLICIES.c.tenant_id.in_(list(tenants)))).all()
        return {row.tenant_id: _policy(row) for row in rows}

    def reserve(self, reservation: Reservation, now: float) -> None:
        r = reservation
        row = (r.id, r.parent, r.agent_id, r.state, r.child, r.depth, json.dumps(r.request, sort_keys=True),
               r.created_at, r.expires_at, now, r.why)  # fmt: skip
        self._cursor().execute(_hot(self._mark).reserve, row)

    @property
    def _mark(self) -> str:
        return "?" if self._session.get_bind().dialect.paramstyle == "qmark" else "%s"

    def _cursor(self) -> Any:
        """The driver's own cursor in this session's transaction: a decision's statements are on
        the request path, and SQLAlchemy's statement machinery cost more than they do (as in
        store/audit.py; bench/policy_decide.py)."""
        if self._raw is None:
            self._raw = self._session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
        return self._raw

    # ---- a reservation's life --------------------------------------------------------------

    def reservation(self, id_: str) -> Reservation | None:
        row = self._session.execute(select(RESERVATIONS).where(RESERVATIONS.c.id == id_)).first()
        return None if row is None else _reservation(row)

    def reservations(self, parent: str) -> list[Reservation]:
        query = select(RESERVATIONS).where(RESERVATIONS.c.parent == parent).order_by(RESERVATIONS.c.created_at)
        return [_reservation(row) for row in self._session.execute(query).all()]

    def bind(self, id_: str, child: str, now: float, expires: float) -> bool:
        """Name the child of a reserved reservation, which then expires at ``expires`` (again
        with the same name: True, only the expiry moves)."""
        query = (
            update(RESERVATIONS)
            .where(RESERVATIONS.c.id == id_, RESERVATIONS.c.state == "reserved")
            .where((RESERVATIONS.c.child.is_(None)) | (RESERVATIONS.c.child == child))
            .values(child=child, updated_at=now, expires_at=expires)
        )
        return bool(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    def move(self, id_: str, before: str, after: str, now: float, why: str | None = None) -> Reservation | None:
        """A compare-and-set of the state: of two racing callers (a sweep and the spawn) one wins;
        the reservation as it is now, or None when it was not in ``before``."""
        query = (
            update(RESERVATIONS)
            .where(RESERVATIONS.c.id == id_, RESERVATIONS.c.state == before)
            .values(state=after, updated_at=now, why=why)
            .returning(*RESERVATIONS.c)
        )
        row = self._session.execute(query).first()
        return None if row is None else _reservation(row)

    def expired(self, now: float, limit: int = 500) -> list[Reservation]:
        query = (
            select(RESERVATIONS)
            .where(RESERVATIONS.c.state == "reserved", RESERVATIONS.c.expires_at < now)
            .order_by(RESERVATIONS.c.expires_at)
            .limit(limit)
        )
        return [_reservation(row) for row in self._session.execute(query).all()]

    def used_by(self, child: str) -> Reservation | None:
        """The reservation ``child`` holds its parent's place by: used, or reserved for its spawn."""
        query = select(RESERVATIONS).where(RESERVATIONS.c.child == child, RESERVATIONS.c.state.in_(COUNTED))
        row = self._session.execute(query).first()
        return None if row is None else _reservation(row)

    # ---- tenants ---------------------------------------------------------------------------

    def tenant_status(self, tenant: str) -> str | None:
        row = self._session.execute(select(TENANTS.c.status).where(TENANTS.c.tenant_id == tenant)).first()
        return None if row is None else str(row[0])

    def parent_of(self, tenant: str) -> str | None:
        row = self._session.execute(select(TENANTS.c.parent).where(TENANTS.c.tenant_id == tenant)).first()
        return None if row is None or row[0] is None else str(row[0])

    def set_parent(self, child: str, parent: str) -> bool:
        """Link a child tenant to its parent (once: a tenant linked to another parent is not moved)."""
        query = (
            update(TENANTS)
            .where(TENANTS.c.tenant_id == child)
            .where(TENANTS.c.parent.is_(None) | (TENANTS.c.parent == parent))
            .values(parent=parent)
        )
        return bool(self._session.execute(query).rowcount)  # type: ignore[attr-defined]

    # ---- the operator's side ---------------------------------------------------------------

    def forget(self, tenant: str) -> None:
        """Drop a tenant's own policy (a removed tenant registered again starts with it off)."""
        self._session.connection().execute(delete(POLICIES).where(POLICIES.c.tenant_id == tenant))

    def get(self, tenant: str) -> SpawnPolicy | None:
        row = self._session.execute(select(POLICIES).where(POLICIES.c.tenant_id == tenant)).first()
        return None if row is None else _policy(row)

    def deny(self, tenant: str, by: str | None) -> bool:
        """Turn ``tenant``'s self-spawn off (its policy kept, ``allowed`` false); False: it had none."""
        query = update(POLICIES).where(POLICIES.c.tenant_id == tenant, POLICIES.c.allowed.is_(True))
        return bool(self._session.execute(query.values(allowed=False, updated_at=utcnow(), updated_by=by)).rowcount)  # type: ignore[attr-defined]

    def put(self, policy: SpawnPolicy, by: str | None, exists: bool) -> None:
        values: dict[str, Any] = {
            "allowed": policy.allowed, "max_children": policy.max_children, "max_depth": policy.max_depth,
            "rate": policy.rate, "period": policy.period, "updated_at": utcnow(), "updated_by": by,
            **{kind: json.dumps(list(policy.names(kind))) for kind in _KINDS},
        }  # fmt: skip
        if exists:
            self._session.execute(update(POLICIES).where(POLICIES.c.tenant_id == policy.tenant).values(**values))
        else:
            values |= {"tenant_id": policy.tenant, "window_start": 0.0, "window_count": 0}
            self._session.execute(insert(POLICIES).values(**values))

    def switch(self) -> tuple[bool, datetime | None, str | None]:
        row = self._session.execute(select(SWITCH).where(SWITCH.c.name == "global")).first()
        return (False, None, None) if row is None else (bool(row.forbid), row.changed_at, row.changed_by)

    def set_switch(self, forbid: bool, by: str | None) -> None:
        values = {"forbid": forbid, "changed_at": utcnow(), "changed_by": by}
        done = self._session.execute(update(SWITCH).where(SWITCH.c.name == "global").values(**values))
        if not done.rowcount:  # type: ignore[attr-defined]
            self._session.execute(insert(SWITCH).values(name="global", **values))

    def decisions(self, tenant: str, actions: Sequence[str], limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` audit entries of ``tenant`` with one of ``actions``, oldest first."""
        query = (
            select(AUDIT.c.body)
            .where(AUDIT.c.tenant == tenant, AUDIT.c.action.in_(list(actions)))
            .order_by(AUDIT.c.ts.desc(), AUDIT.c.host, AUDIT.c.seq.desc())
            .limit(limit)
        )
        found: list[dict[str, Any]] = [json.loads(row[0]) for row in self._session.execute(query).all()]
        return list(reversed(found))
