"""The tree of ``colibri agents --tree`` (pure): tenants as a forest by ``tenants.parent``, each
with its agents."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

MAX_DEPTH = 16  # deeper than any policy allows: a longer chain (a cycle a hostile row made) stops here


def forest(
    tenants: Sequence[tuple[str, str | None, str]], agents: Iterable[Mapping[str, Any]], only: str | None = None
) -> list[dict[str, Any]]:
    """``tenants``: (id, parent, status); ``agents``: the daemon's agents (``key``, ``tenant``,
    ``agent_id``, ``state``).  Roots are the tenants whose parent is none or not live; with
    ``only``, that tenant's subtree alone.  Each node: tenant, parent, status, agents, children."""
    known = {t for t, _, _ in tenants}
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for agent in agents:
        owner = agent.get("tenant")
        if isinstance(owner, str) and owner in known:
            by_tenant.setdefault(owner, []).append(
                {"key": agent["key"], "agent_id": agent.get("agent_id"), "state": agent.get("state")}
            )
    below: dict[str, list[tuple[str, str | None, str]]] = {}
    for row in tenants:
        if row[1] is not None and row[1] in known:
            below.setdefault(row[1], []).append(row)

    def node(row: tuple[str, str | None, str], depth: int, seen: frozenset[str]) -> dict[str, Any]:
        tenant, parent, status = row
        kids = [] if depth >= MAX_DEPTH else [r for r in below.get(tenant, []) if r[0] not in seen]
        return {
            "tenant": tenant, "parent": parent, "status": status, "agents": by_tenant.get(tenant, []),
            "children": [node(r, depth + 1, seen | {r[0]}) for r in kids],
        }  # fmt: skip

    if only is not None:
        return [node(r, 0, frozenset({r[0]})) for r in tenants if r[0] == only]
    roots = [r for r in tenants if r[1] is None or r[1] not in known]
    return [node(r, 0, frozenset({r[0]})) for r in roots]
