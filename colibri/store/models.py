"""SQLModel tables.  Public views are plain dicts built in ``to_public`` functions; no secret is
ever stored here (the vault's collection *id* is an identifier, not a secret)."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Index
from sqlalchemy.orm import declared_attr
from sqlmodel import Field, SQLModel, col, select

# the public view of a tenant lives with the listing read path (which imports no table class)
from colibri.store.listing import AGENT_ID as AGENT_ID
from colibri.store.listing import SkillView as SkillView
from colibri.store.listing import TenantView as TenantView
from colibri.store.listing import skill_public as skill_public
from colibri.store.listing import tenant_public_row as tenant_public_row


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Tenant(SQLModel, table=True):
    """One tenant: tenant id == jail name == Vaultwarden collection (1:1:1)."""

    __tablename__ = "tenants"

    tenant_id: str = Field(primary_key=True, max_length=64)
    jail_name: str = Field(max_length=64, unique=True)
    collection_name: str | None = Field(default=None, max_length=255)
    collection_id: str | None = Field(default=None, max_length=64)
    host: str = Field(max_length=255, index=True)
    status: str = Field(max_length=16, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, max_length=2000)
    # jails and spawning (migration 0002)
    backend: str | None = Field(default=None, max_length=16)
    jail_root: str | None = Field(default=None, max_length=1024)
    ip_address: str | None = Field(default=None, max_length=64, unique=True)
    template: str | None = Field(default=None, max_length=255)
    capabilities: str | None = None  # JSON list of capability names
    spawn_step: str | None = Field(default=None, max_length=32)
    adopted: bool = False
    # secrets (migration 0003): ok | stale | none; the daemon compares secrets_changed_at
    secrets_status: str | None = Field(default=None, max_length=16)
    secrets_error: str | None = Field(default=None, max_length=2000)
    secrets_changed_at: datetime | None = None
    secrets_checked_at: datetime | None = None
    # isolation (migration 0005): the first host uid/gid of the tenant's block (JailIds.base)
    uid_base: int | None = Field(default=None, unique=True)
    # skills (migration 0009): paid | community (domain.Tier)
    tier: str = Field(default="paid", max_length=16, sa_column_kwargs={"server_default": "paid"})
    # children (migration 0010, issue 14): the tenant whose agent asked for this one (None: an operator's)
    parent: str | None = Field(default=None, max_length=64, index=True)


TENANT_COLUMNS = tuple(Tenant.model_fields)


def tenant_public(tenant: Tenant) -> TenantView:
    """The tenant as shown by ``show-tenant`` and ``list-tenants`` (stable keys, see README), with
    its installed skills read in the tenant's own session (none when it is detached)."""
    from sqlalchemy.orm import object_session

    session = object_session(tenant)
    skills = []
    if session is not None:
        query = select(TenantSkill).where(TenantSkill.tenant_id == tenant.tenant_id).order_by(col(TenantSkill.name))
        skills = [skill_public(row.model_dump()) for row in session.execute(query).scalars()]
    return tenant_public_row({name: getattr(tenant, name) for name in TENANT_COLUMNS}, skills)


class TenantSkill(SQLModel, table=True):
    """A skill installed in a tenant's jail (migration 0009): one row per name, written by spawn in
    the step that copied it.  ``digest`` is the bundle's (``sha256:...``, as the index or allow-list pins it),
    ``manifest_digest`` its MANIFEST.json's (what the mother reports it read), ``source`` first-party,
    community or builtin (colibri's shipped mother, no repository configured); ``capabilities``
    the JSON list of capability names its handlers provide."""

    __tablename__ = "tenant_skills"

    tenant_id: str = Field(primary_key=True, max_length=64, foreign_key="tenants.tenant_id")
    name: str = Field(primary_key=True, max_length=64)
    version: str = Field(max_length=64)
    digest: str = Field(max_length=80)
    manifest_digest: str = Field(max_length=80)
    source: str = Field(max_length=16)
    capabilities: str = "[]"
    installed_at: datetime = Field(default_factory=utcnow)


# ---- the hive (migration 0004): agents, tasks, lanes --------------------------------------------


class Agent(SQLModel, table=True):
    """One agent: a mother in a tenant's jail, or a shared lane agent on an operator's lane socket.

    ``key`` is ``<tenant>/<agent_id>`` or ``lane:<lane>/<agent_id>``: the owner comes from the socket
    the agent registered on, so two tenants may use the same agent id without meeting.
    """

    __tablename__ = "agents"

    key: str = Field(primary_key=True, max_length=140)
    agent_id: str = Field(max_length=64)
    tenant_id: str | None = Field(default=None, max_length=64, index=True)
    lane: str | None = Field(default=None, max_length=64)
    capabilities: str = "[]"  # JSON list of {"name": ..., "version": ...}
    mother_version: str | None = Field(default=None, max_length=32)
    state: str = Field(max_length=16, index=True)
    registered_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    state_changed_at: datetime = Field(default_factory=utcnow)
    # many hosts (migration 0006): the host whose daemon this agent registered with
    host: str | None = Field(default=None, max_length=64, index=True)


class Task(SQLModel, table=True):
    """A unit of work for one capability.  ``tenant_id`` None: an operator's task (lane agents only)."""

    __tablename__ = "tasks"
    __table_args__ = (
        Index("ix_tasks_lane_order", "state", "capability", "turn", "id"),
        Index("ix_tasks_tenant_turn", "tenant_id", "state", "capability", "turn", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: str | None = Field(default=None, max_length=64, index=True)
    capability: str = Field(max_length=64)
    payload: str = "null"  # JSON
    state: str = Field(max_length=16, index=True)
    attempts: int = 0
    max_attempts: int = 3
    submitted_by: str = Field(default="operator", max_length=140)
    agent_key: str | None = Field(default=None, max_length=140)
    lease_token: str | None = Field(default=None, max_length=64)
    lease_expires_at: float | None = None  # seconds since the epoch, survives restarts
    result: str | None = None  # JSON
    error: str | None = Field(default=None, max_length=4000)
    exit_status: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    claimed_at: datetime | None = None
    finished_at: datetime | None = Field(default=None, index=True)
    # migration 0005: a retried submit with the same key from the same submitter is the same task
    idempotency_key: str | None = Field(default=None, max_length=128)
    # many hosts (migration 0006): the host whose daemon leased it; the fencing token of that claim
    host: str | None = Field(default=None, max_length=64)
    fence: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})
    # fair lanes (migration 0008): the task's round in its capability's queue; a lane claims by (turn, id)
    turn: int = Field(default=0, sa_type=BigInteger, sa_column_kwargs={"server_default": "0"})

    @declared_attr  # type: ignore[arg-type]
    def __mapper_args__(cls) -> dict[str, Any]:
        """Every ORM update of a task names the fence it read (``WHERE id = ? AND fence = ?``); a
        claim sets the next one, so a writer whose claim was superseded updates 0 rows (StaleDataError)."""
        return {"version_id_col": cls.__table__.c.fence, "version_id_generator": False}  # type: ignore[attr-defined]


class Lane(SQLModel, table=True):
    """A shared lane declared by the operator: its agents may take any tenant's tasks."""

    __tablename__ = "lanes"

    name: str = Field(primary_key=True, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class Host(SQLModel, table=True):
    """One host of the hive (migration 0006).  The SSH columns are how the orchestrator reaches it
    (empty for a host never driven over SSH); the lease is renewed by the host's own daemon."""

    __tablename__ = "hosts"

    name: str = Field(primary_key=True, max_length=64)
    ssh_user: str | None = Field(default=None, max_length=64)
    address: str | None = Field(default=None, max_length=255)
    port: int | None = None
    host_keys: str | None = None  # the pinned OpenSSH public key lines ("ssh-ed25519 AAAA..."), one per line
    command: str | None = Field(default=None, max_length=1024)  # the remote colibri; None: "colibri"
    backend: str | None = Field(default=None, max_length=16)
    version: str | None = Field(default=None, max_length=32)
    state: str = Field(default="unknown", max_length=16, sa_column_kwargs={"server_default": "unknown"})
    lease_expires_at: float | None = None  # seconds since the epoch
    lease_term: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    last_error: str | None = Field(default=None, max_length=2000)
    enrolled_at: datetime = Field(default_factory=utcnow)
    checked_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
