"""What a tenant's agent may say it loaded and offers (issue 13): only what the host installed.

The mother reports at registration each skill it loaded (name, version, the sha256 of the
MANIFEST.json it read); the daemon compares that, and every capability the agent offers, with the
tenant's installed set (store/skills.py, written by spawn).  A skill that is not installed (or
another version or manifest of it), or a capability no installed skill provides, is refused: 403,
an ``agent.refuse`` entry, and the agent is not registered.  A tenant with no installed set
recorded (spawned before migration 0009, or by spawn-local) is not checked until its next
spawn-agent records one.
"""

from typing import Any

from sqlmodel import Session

from colibri.domain import validate_name
from colibri.errors import InvalidInput, PermissionDenied
from colibri.store.audit_hooks import agent_actor, record
from colibri.store.skills import Installed, SkillRepo
from colibri.supply.manifest import VERSION_RE
from colibri.supply.metadata import DIGEST

MAX_SKILLS = 64


def parse_loaded(value: object) -> list[dict[str, str | None]] | None:
    """The register body's ``skills``: at most 64 objects {name, version, manifest} (None: absent)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SKILLS:
        raise InvalidInput(f"skills must be a list of at most {MAX_SKILLS} objects")
    found: list[dict[str, str | None]] = []
    for item in value:
        if not isinstance(item, dict) or not set(item) <= {"name", "version", "manifest"}:
            raise InvalidInput('each skill is an object {"name", "version", "manifest"}')
        name = validate_name(item.get("name"), "skill name")
        version, manifest = item.get("version"), item.get("manifest")
        # Both are echoed in the refusal, the audit entry and the operator's terminal: only the
        # shapes a host ever installs (X.Y.Z, sha256:<64 hex>) are taken, never raw tenant text.
        if not isinstance(version, str) or not VERSION_RE.fullmatch(version):
            raise InvalidInput(f"skill {name}: version must be MAJOR.MINOR.PATCH")
        if manifest is not None and (not isinstance(manifest, str) or not DIGEST.fullmatch(manifest)):
            raise InvalidInput(f"skill {name}: manifest must be sha256:<64 hex digits>")
        if any(f["name"] == name for f in found):
            raise InvalidInput(f"skill {name} is listed twice")
        found.append({"name": name, "version": version, "manifest": manifest})
    return found


def refusal(installed: list[Installed], loaded: list[dict[str, Any]] | None, capabilities: list[str]) -> str | None:
    """Why the agent may not register with these (None: it may), against the tenant's installed set."""
    if not installed:
        return None
    by_name = {s.name: s for s in installed}
    if loaded is None:
        return "it did not say which skills it loaded (a mother older than its jail's skills?)"
    for item in loaded:
        kept = by_name.get(str(item["name"]))
        if kept is None:
            return f"skill {item['name']} is not installed for this tenant"
        if item["version"] != kept.version or item["manifest"] != kept.manifest_digest:
            return (
                f"skill {item['name']} {item['version']} with manifest {item['manifest']} is not the one installed "
                f"({kept.version}, {kept.manifest_digest})"
            )
    provided = {cap for s in installed if s.name in {i["name"] for i in loaded} for cap in s.capabilities}
    for cap in capabilities:
        if cap not in provided:
            return f"capability {cap} is provided by no installed skill it loaded"
    return None


def check_register(
    session: Session, tenant: str, key: str, loaded: list[dict[str, Any]] | None, capabilities: list[str]
) -> str | None:
    """The refusal for this registration (recorded as ``agent.refuse`` in ``session``), or None."""
    why = refusal(SkillRepo(session).installed(tenant), loaded, capabilities)
    if why is not None:
        record(session, "agent.refuse", f"agent:{key}", tenant=tenant, actor=agent_actor(key), outcome="refused",
               reason=why, capabilities=capabilities, skills=[str(i["name"]) for i in loaded or []])  # fmt: skip
    return why


def refused(key: str, why: str) -> PermissionDenied:
    return PermissionDenied(f"agent {key} refused: {why}")
