"""Children (issue 14): ``spawn-child`` (hidden: the daemon runs it), the tree of ``agents --tree``,
a tenant's parent and children for ``show-tenant``, ``remove-tenant --cascade``."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from colibri.cli import context, output

if TYPE_CHECKING:
    from colibri.cli.context import Context
    from colibri.services.children.cascade import Cascade
    from colibri.services.children.spawner import ChildSpawner


def policy_of(cli: "Context") -> Any:
    from colibri.services.policy.service import SpawnPolicyService

    return SpawnPolicyService(cli.store, reservation_ttl=cli.settings.spawn_reservation_ttl)


def spawner(cli: "Context") -> "ChildSpawner":
    from colibri.services.children.spawner import ChildSpawner

    return ChildSpawner(cli.store, policy_of(cli), cli.lifecycle().spawn, cli.tenants())


def cascade(cli: "Context") -> "Cascade":
    from colibri.services.children.cascade import Cascade

    run_dir = cli.settings.run_dir
    return Cascade(cli.store, cli.tenants(), cli.lifecycle().destroy, run_dir / "locks", policy_of(cli),
                   lambda tenant: run_dir / "agents" / tenant)  # fmt: skip


def spawn_child(
    ctx: typer.Context,
    child: Annotated[str, typer.Argument(help="The child tenant's id (colibri chose it).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output; progress as one JSON object per line.")] = False,
) -> None:
    """Run (or resume) a child's spawn and settle its reservation: used when the child is active,
    released (and the child discarded) when its spawn fails or its reservation expired.  The
    daemon starts this after an allowed request and again after a crash; safe to run by hand."""
    from colibri.domain import validate_tenant_id

    validate_tenant_id(child)
    cli = context.get(ctx)
    printer = output.StepPrinter(as_json)
    try:
        outcome = spawner(cli).converge(child, on_step=printer)
    finally:
        printer.close()
    if as_json:
        output.emit_json_line({"ok": True, "child": outcome.child, "outcome": outcome.outcome})
    else:
        output.line(f"child {outcome.child}: {outcome.outcome}")


def settle(cli: "Context") -> list[Any]:
    """``reconcile --apply``'s part: the policy's sweep, then ``spawn-child``'s convergence for
    every child whose reservation is neither used nor released (what the daemon's loop does)."""
    from colibri.store.children import ChildRepo

    spawn = spawner(cli)
    policy_of(cli).sweep()
    with cli.store.session() as session:
        pending = ChildRepo(session).pending_children()
    return [spawn.converge(child) for child, _, _ in pending]


def family(cli: "Context", tenant: str) -> dict[str, Any]:
    """A tenant's parent and its children (their ids, the oldest first)."""
    from colibri.store.children import ChildRepo

    with cli.store.session() as session:
        repo = ChildRepo(session)
        return {"parent": repo.parent_of(tenant), "children": [t.tenant_id for t in repo.children_of(tenant)]}


def tree(cli: "Context", tenant: str | None) -> list[dict[str, Any]]:
    """Every live tenant as a forest (roots: tenants without a parent; with ``tenant``: its
    subtree), each with its agents and their states (the daemon's; none, and a note on stderr,
    while the daemon does not answer: the lineage is the store's)."""
    from colibri.errors import DaemonError, TenantNotFound
    from colibri.services.children.tree import forest
    from colibri.store.repos import TenantRepo

    with cli.store.session() as session:
        rows = [(t.tenant_id, t.parent, t.status) for t in TenantRepo(session).find()]
    if tenant is not None and tenant not in {r[0] for r in rows}:
        raise TenantNotFound(tenant)
    try:
        agents = cli.daemon_client().agents(None, None)
    except DaemonError as exc:
        output.note(f"agents not shown: {exc}")
        agents = []
    return forest(rows, agents, tenant)


def tree_lines(nodes: list[dict[str, Any]]) -> None:
    rows: list[tuple[str, str, str, str]] = []

    def walk(node: dict[str, Any], lead: str, last: bool, root: bool) -> None:
        mark = "" if root else ("└─ " if last else "├─ ")
        agents = node["agents"] or [{"key": "-", "state": "-"}]
        for number, agent in enumerate(agents):
            name = lead + mark + node["tenant"] if number == 0 else lead + ("" if root else "   ")
            rows.append((name, node["status"] if number == 0 else "", agent["key"], agent["state"]))
        below = lead if root else lead + ("   " if last else "│  ")
        for i, child in enumerate(node["children"]):
            walk(child, below, i == len(node["children"]) - 1, False)

    for node in nodes:
        walk(node, "", True, True)
    output.table(("TENANT", "STATUS", "AGENT", "STATE"), rows)


def register(app: typer.Typer) -> None:
    app.command("spawn-child", hidden=True)(spawn_child)
