"""The read path of ``list-tenants``: the tenants table as public views, without the ORM.

A Core select of the columns of a lightweight ``table()`` (untyped columns: the driver's values
as they are, no result processing), so a listing imports neither SQLModel's table classes
(``colibri.store.models``) nor the repositories: with the adapters they pull in, about 20 ms of
``list-tenants --json``'s ~440 ms (docs/PERFORMANCE.md).  The view of one tenant is built here
too, from its column values, for this path and the ORM one (``models.tenant_public``) alike: one
definition of what a tenant shows.
"""

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict

from sqlalchemy import DateTime, column, select, table
from sqlalchemy.engine import Connection

AGENT_ID = 1001
"""The agent's id inside its tenant's block (colibri.adapters.jail.AGENT_ID; the store sits below
the adapters, so the number is repeated here and a unit test keeps the two equal)."""

TENANT_COLUMNS = (
    "tenant_id", "jail_name", "collection_name", "collection_id", "host", "status", "created_at",
    "updated_at", "last_error", "backend", "jail_root", "ip_address", "template", "capabilities",
    "spawn_step", "adopted", "secrets_status", "secrets_error", "secrets_changed_at",
    "secrets_checked_at", "uid_base", "tier", "parent",
)  # fmt: skip
"""The columns of ``models.Tenant``, in its order (a unit test keeps the two equal)."""

_TIMESTAMPS = frozenset(("created_at", "updated_at", "secrets_changed_at", "secrets_checked_at"))
_TENANTS = table("tenants", *(column(name) for name in TENANT_COLUMNS))
SKILL_COLUMNS = ("tenant_id", "name", "version", "digest", "manifest_digest", "source", "capabilities", "installed_at")
"""The columns of ``models.TenantSkill`` (migration 0009), in its order."""
_SKILLS = table("tenant_skills", *(column(name) for name in SKILL_COLUMNS))
# how SQLAlchemy's SQLite DATETIME writes a value; any other text is read the way it reads it
_SQLITE_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}").fullmatch


class SkillView(TypedDict):
    """A skill installed in a tenant's jail, as ``show-tenant`` shows it (issue 13)."""

    name: str
    version: str
    digest: str
    source: str
    capabilities: list[str]
    installed_at: str | None


def skill_public(row: Mapping[str, Any]) -> SkillView:
    """The public view of an installed skill from its column values."""
    return {
        "name": row["name"],
        "version": row["version"],
        "digest": row["digest"],
        "source": row["source"],
        "capabilities": json.loads(row["capabilities"] or "[]"),
        "installed_at": iso(row["installed_at"]),
    }


class TenantView(TypedDict):
    """A tenant as ``show-tenant`` and ``list-tenants`` show it (README; these keys, this order)."""

    tenant_id: str
    jail_name: str
    collection_name: str | None
    collection_id: str | None
    host: str
    status: str
    created_at: str | None
    updated_at: str | None
    last_error: str | None
    backend: str | None
    jail_root: str | None
    ip_address: str | None
    template: str | None
    capabilities: list[dict[str, str]]
    spawn_step: str | None
    adopted: bool
    secrets_status: str | None
    secrets_error: str | None
    secrets_changed_at: str | None
    secrets_checked_at: str | None
    uid_base: int | None
    agent_uid: int | None
    tier: str
    skills: list[SkillView]
    parent: str | None


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # the columns hold naive datetimes; they were written as UTC
        return value.isoformat() + "Z"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def tenant_public_row(row: Mapping[str, Any], skills: list[SkillView] | None = None) -> TenantView:
    """The public view of a tenant from its column values (timestamps as datetimes) and its
    installed skills (by name)."""
    return {
        "tenant_id": row["tenant_id"],
        "jail_name": row["jail_name"],
        "collection_name": row["collection_name"],
        "collection_id": row["collection_id"],
        "host": row["host"],
        "status": row["status"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
        "last_error": row["last_error"],
        "backend": row["backend"],
        "jail_root": row["jail_root"],
        "ip_address": row["ip_address"],
        "template": row["template"],
        "capabilities": json.loads(row["capabilities"]) if row["capabilities"] else [],
        "spawn_step": row["spawn_step"],
        "adopted": row["adopted"],
        "secrets_status": row["secrets_status"],
        "secrets_error": row["secrets_error"],
        "secrets_changed_at": iso(row["secrets_changed_at"]),
        "secrets_checked_at": iso(row["secrets_checked_at"]),
        "uid_base": row["uid_base"],
        "agent_uid": None if row["uid_base"] is None else row["uid_base"] + AGENT_ID,  # JailIds.agent_uid
        "tier": row["tier"],
        "skills": list(skills or []),
        "parent": row["parent"],
    }


def tenant_views(conn: Connection, status: str | None = None) -> list[TenantView]:
    """The tenants (those in ``status``; else all but the removed ones) ordered by id, as views:
    what ``tenant_public_row`` gives for each, built straight from the driver's values."""
    query = select(_TENANTS).order_by(_TENANTS.c.tenant_id)
    query = query.where(_TENANTS.c.status == status if status is not None else _TENANTS.c.status != "removed")
    rows = conn.execute(query).all()
    stamp = _stamp_reader(conn)
    installed = _installed(conn, stamp) if rows else {}
    views: list[TenantView] = []
    append = views.append
    for row in rows:
        (tenant_id, jail_name, collection_name, collection_id, host, status_, created_at, updated_at, last_error,
         backend, jail_root, ip_address, template, capabilities, spawn_step, adopted, secrets_status,
         secrets_error, secrets_changed_at, secrets_checked_at, uid_base, tier, parent) = row  # fmt: skip
        append({
            "tenant_id": tenant_id,
            "jail_name": jail_name,
            "collection_name": collection_name,
            "collection_id": collection_id,
            "host": host,
            "status": status_,
            "created_at": stamp(created_at),
            "updated_at": stamp(updated_at),
            "last_error": last_error,
            "backend": backend,
            "jail_root": jail_root,
            "ip_address": ip_address,
            "template": template,
            "capabilities": json.loads(capabilities) if capabilities else [],
            "spawn_step": spawn_step,
            "adopted": bool(adopted),  # SQLite holds 0/1 (NOT NULL)
            "secrets_status": secrets_status,
            "secrets_error": secrets_error,
            "secrets_changed_at": stamp(secrets_changed_at),
            "secrets_checked_at": stamp(secrets_checked_at),
            "uid_base": uid_base,
            "agent_uid": None if uid_base is None else uid_base + AGENT_ID,
            "tier": tier,
            "skills": installed.get(tenant_id, []),
            "parent": parent,
        })  # fmt: skip
    return views


def _installed(conn: Connection, stamp: Callable[[Any], str | None]) -> dict[str, list[SkillView]]:
    """Every tenant's installed skills, by name (one query for the whole listing)."""
    found: dict[str, list[SkillView]] = {}
    for tenant_id, name, version, digest, _manifest, source, capabilities, installed_at in conn.execute(
        select(_SKILLS).order_by(_SKILLS.c.tenant_id, _SKILLS.c.name)
    ):
        found.setdefault(tenant_id, []).append({
            "name": name,
            "version": version,
            "digest": digest,
            "source": source,
            "capabilities": json.loads(capabilities or "[]"),
            "installed_at": stamp(installed_at),
        })  # fmt: skip
    return found


def _stamp_reader(conn: Connection) -> Callable[[Any], str | None]:
    """A raw timestamp column value to its public text: ``iso`` of what SQLAlchemy's DateTime
    would read.  SQLite holds text; the text SQLAlchemy writes is turned into ISO 8601 by slicing
    (``2026-01-01 00:00:00.000000`` to ``2026-01-01T00:00:00Z``, as ``datetime.isoformat`` drops
    zero microseconds), any other through SQLAlchemy's own SQLite parser.  Other drivers give
    datetimes."""
    parse = DateTime().dialect_impl(conn.dialect).result_processor(conn.dialect, None)

    def stamp(value: Any) -> str | None:
        if value is None:
            return None
        if type(value) is str:
            if len(value) == 26 and value[10] == " " and value[19] == "." and _SQLITE_STAMP(value):
                return f"{value[:10]}T{value[11:19]}Z" if value[20:] == "000000" else f"{value[:10]}T{value[11:]}Z"
            if parse is not None:
                value = parse(value)
        return iso(value)

    return stamp
