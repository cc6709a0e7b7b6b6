"""The skills installed in tenants' jails (issue 13, migration 0009): the only SQL on them.

One row per (tenant, skill name); spawn writes it in the transaction of the step that copied the
skill into the jail, each with its audit entry (``skill.install``, ``skill.remove``)."""

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from colibri.store.audit_hooks import record
from colibri.store.models import TenantSkill, utcnow


@dataclass(frozen=True)
class Installed:
    """A skill as the store records it installed in a tenant's jail."""

    name: str
    version: str
    digest: str
    source: str
    capabilities: tuple[str, ...]
    manifest_digest: str  # sha256 of its MANIFEST.json: what the mother reports it read


class SkillRepo:
    def __init__(self, session: Session) -> None:
        self._session = session

    def installed(self, tenant_id: str) -> list[Installed]:
        """The tenant's installed skills, by name."""
        query = select(TenantSkill).where(TenantSkill.tenant_id == tenant_id).order_by(col(TenantSkill.name))
        return [_installed(row) for row in self._session.exec(query).all()]

    def put(self, tenant_id: str, skill: Installed) -> bool:
        """Record ``skill`` installed (a new row, or another version or digest of that name); its
        audit entry names it.  The same skill again changes nothing: returns False."""
        row = self._session.get(TenantSkill, (tenant_id, skill.name), with_for_update=True)
        if row is not None and _installed(row) == skill:
            return False
        was = None if row is None else f"{row.version} {row.digest}"
        if row is None:
            row = TenantSkill(tenant_id=tenant_id, name=skill.name, version=skill.version, digest=skill.digest,
                              source=skill.source, manifest_digest=skill.manifest_digest)  # fmt: skip
        row.version, row.digest, row.source = skill.version, skill.digest, skill.source
        row.manifest_digest = skill.manifest_digest
        row.capabilities = json.dumps(list(skill.capabilities), separators=(",", ":"))
        row.installed_at = utcnow()
        self._session.add(row)
        self._session.flush()
        record(self._session, "skill.install", f"tenant:{tenant_id}", tenant=tenant_id, skill=skill.name,
               version=skill.version, digest=skill.digest, source=skill.source, was=was)  # fmt: skip
        return True

    def installed_by_tenant(self, tenant_id: str) -> dict[str, Installed]:
        return {s.name: s for s in self.installed(tenant_id)}

    def remove_all(self, tenant_id: str) -> None:
        """Forget every skill of the tenant (its jail was destroyed or handed back)."""
        self.remove(tenant_id, [s.name for s in self.installed(tenant_id)])

    def remove(self, tenant_id: str, names: Sequence[str]) -> None:
        """Forget these installed skills of the tenant (their files were taken out of its jail)."""
        for name in names:
            row = self._session.get(TenantSkill, (tenant_id, name), with_for_update=True)
            if row is None:
                continue
            self._session.delete(row)
            record(self._session, "skill.remove", f"tenant:{tenant_id}", tenant=tenant_id, skill=name,
                   version=row.version, digest=row.digest, source=row.source)  # fmt: skip
        self._session.flush()


def _installed(row: TenantSkill) -> Installed:
    caps = tuple(json.loads(row.capabilities or "[]"))
    return Installed(row.name, row.version, row.digest, row.source, caps, row.manifest_digest)
