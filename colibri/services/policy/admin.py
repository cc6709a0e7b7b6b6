"""The operator's side of the spawn policy: show, set (a child's only narrows), the global switch,
and the decisions recorded in the audit trail."""

from dataclasses import dataclass, replace
from typing import Any

from colibri.audit import origin
from colibri.errors import InvalidInput, TenantNotFound
from colibri.policy.model import KINDS, Effective, SpawnPolicy, checked, effective, parse_names, parse_rate, widened
from colibri.store.audit_hooks import record
from colibri.store.db import Store
from colibri.store.listing import iso
from colibri.store.policy import COUNTED, PolicyRepo

DECISION_ACTIONS = ("policy.decide", "policy.bind", "policy.use", "policy.release", "policy.sweep", "policy.set")
MAX_DECISIONS = 10_000


@dataclass(frozen=True)
class PolicyChange:
    """What ``colibri policy set`` changes (None: kept; a new policy starts from the defaults)."""

    allowed: bool | None = None
    max_children: int | None = None
    max_depth: int | None = None
    rate: str | None = None  # N/PERIOD
    templates: str | None = None  # comma-separated; "*": any; "": none
    capabilities: str | None = None
    skills: str | None = None
    hosts: str | None = None


class PolicyAdmin:
    def __init__(self, store: Store) -> None:
        self._store = store

    def show(self, tenant: str) -> dict[str, Any]:
        with self._store.session() as session:
            repo = PolicyRepo(session)
            if repo.tenant_status(tenant) is None:
                raise TenantNotFound(tenant)
            lineage, broken = repo.lineage(tenant)
            policies = repo.policies(lineage)
            forbid = repo.switch()[0]
            held = [r.view() for r in repo.reservations(tenant) if r.state in COUNTED]
        own = policies.get(tenant)
        chain = tuple(policies[t] for t in lineage if t in policies)
        whole = not broken and len(chain) == len(lineage)
        eff = effective(chain) if whole else None
        return {
            "tenant": tenant,
            "parent": lineage[-2] if len(lineage) > 1 else None,
            "lineage": list(lineage),
            "depth": len(lineage) - 1,
            "policy": None if own is None else own.view(),
            "effective": _effective_view(eff) if eff is not None else None,
            "enabled": bool(eff is not None and eff.allowed and not forbid),
            "global_forbid": forbid,
            "children": len(held),
            "reservations": held,
        }

    def set(self, tenant: str, change: PolicyChange) -> dict[str, Any]:
        with self._store.session() as session:
            repo = PolicyRepo(session)
            if repo.tenant_status(tenant) is None:
                raise TenantNotFound(tenant)
            before = repo.get(tenant)
            policy = _changed(before or SpawnPolicy(tenant), change)
            lineage, broken = repo.lineage(tenant)
            if broken:
                raise InvalidInput(f"the lineage of {tenant} is too deep or loops; its policy cannot be set")
            if len(lineage) > 1:
                ancestors = repo.policies(lineage[:-1])
                missing = [t for t in lineage[:-1] if t not in ancestors]
                if missing:
                    raise InvalidInput(
                        f"{tenant} is a child of {lineage[-2]}; {missing[0]} has no spawn policy, so {tenant}'s "
                        "cannot be set (a child's policy only narrows its parent's)"
                    )
                wider = widened(policy, effective(tuple(ancestors[t] for t in lineage[:-1])))
                if wider:
                    raise InvalidInput(
                        f"{tenant}'s policy would be wider than its parent {lineage[-2]}'s (a child's only narrows): "
                        + "; ".join(wider)
                    )
            repo.put(policy, origin.current().actor, exists=before is not None)
            record(session, "policy.set", f"tenant:{tenant}", tenant=tenant, fields=_diff(before, policy))
        return self.show(tenant)

    def set_global(self, forbid: bool) -> dict[str, Any]:
        with self._store.session() as session:
            repo = PolicyRepo(session)
            repo.set_switch(forbid, origin.current().actor)
            record(session, "policy.global", "policy:global", forbid=forbid)
        return self.global_state()

    def global_state(self) -> dict[str, Any]:
        with self._store.session() as session:
            forbid, changed_at, changed_by = PolicyRepo(session).switch()
        return {
            "forbid": forbid,
            "changed_at": iso(changed_at),
            "changed_by": changed_by,
        }

    def decisions(self, tenant: str, limit: int = 100) -> list[dict[str, Any]]:
        """The tenant's policy entries from the audit trail (decisions, and what became of each grant)."""
        if not 1 <= limit <= MAX_DECISIONS:
            raise InvalidInput(f"--limit must be between 1 and {MAX_DECISIONS}")
        with self._store.session() as session:
            repo = PolicyRepo(session)
            if repo.tenant_status(tenant) is None:
                raise TenantNotFound(tenant)
            entries = repo.decisions(tenant, DECISION_ACTIONS, limit)
        found = []
        for entry in entries:
            detail = entry.get("detail") or {}
            found.append({
                "ts": entry.get("ts"), "host": entry.get("host"), "seq": entry.get("seq"),
                "actor": entry.get("actor"), "action": entry.get("action"), "outcome": entry.get("outcome"),
                "decision": detail.get("decision"), "rule": detail.get("rule"), "reason": detail.get("reason"),
                "agent": detail.get("agent"), "reservation": detail.get("reservation"),
                "child": detail.get("child"), "detail": detail,
            })  # fmt: skip
        return found


def _changed(policy: SpawnPolicy, change: PolicyChange) -> SpawnPolicy:
    updates: dict[str, Any] = {}
    if change.allowed is not None:
        updates["allowed"] = change.allowed
    if change.max_children is not None:
        updates["max_children"] = change.max_children
    if change.max_depth is not None:
        updates["max_depth"] = change.max_depth
    if change.rate is not None:
        updates["rate"], updates["period"] = parse_rate(change.rate)
    for kind in KINDS:
        given = getattr(change, kind)
        if given is not None:
            updates[kind] = parse_names(kind, given)
    return checked(replace(policy, **updates))


def _diff(before: SpawnPolicy | None, after: SpawnPolicy) -> dict[str, Any]:
    now = after.view()
    if before is None:
        return {"created": True, **{k: v for k, v in now.items() if k != "tenant"}}
    was = before.view()
    return {k: v for k, v in now.items() if k != "tenant" and was[k] != v}


def _effective_view(eff: Effective) -> dict[str, Any]:
    return {
        "allowed": eff.allowed,
        "depth_limit": eff.depth_limit,
        "max_children": eff.max_children,
        "rate_per_hour": round(eff.rate_per_hour, 3),
        **{kind: list(eff.lists[kind]) for kind in KINDS},
    }
