"""``colibri policy``: which tenants' agents may spawn agents (issue 14), and the global switch."""

from typing import Annotated, Any

import typer

from colibri.cli import context, output

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]
TenantArg = Annotated[str, typer.Argument(help="The tenant id.")]
SHOW_KEYS = ("tenant", "enabled", "global_forbid", "parent", "depth", "children", "policy", "effective")
LIST_HELP = "comma-separated names, '*' for any, '' for none"

policy_app = typer.Typer(
    help="The spawn policy: may a tenant's agents ask for child agents (off by default). "
    "show, set, global (the switch that forbids all), decisions. See runbooks/spawn-policy.md.",
    no_args_is_help=True,
)


def _admin(ctx: typer.Context) -> Any:
    from colibri.services.policy.admin import PolicyAdmin

    return PolicyAdmin(context.get(ctx).store)


def _show(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.emit_json(found)
        return
    output.show(found, False, keys=SHOW_KEYS)
    if found["reservations"]:
        output.table(
            ("RESERVATION", "STATE", "CHILD", "AGENT", "DEPTH"),
            ((r["id"], r["state"], r["child"], r["agent_id"], r["depth"]) for r in found["reservations"]),
        )


@policy_app.command("show")
def show(ctx: typer.Context, tenant: TenantArg, as_json: JsonFlag = False) -> None:
    """A tenant's own spawn policy, what its whole lineage allows (effective), whether it is
    enabled (the global switch counted), and its children reserved or made."""
    _show(_admin(ctx).show(tenant), as_json)


@policy_app.command("set")
def set_policy(
    ctx: typer.Context,
    tenant: TenantArg,
    allow: Annotated[
        bool | None,
        typer.Option(
            "--allow/--deny",
            help="Let its agents ask for children, or not (--deny stops it at once).",
            show_default=False,
        ),
    ] = None,
    max_children: Annotated[
        int | None, typer.Option("--max-children", help="Children at once, reserved or made (default 3).")
    ] = None,
    max_depth: Annotated[
        int | None,
        typer.Option("--max-depth", help="Generations below this tenant (default 1: its children cannot spawn)."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", help="Requests per period, denied ones counted: N/PERIOD, e.g. 10/h (default), 5/10m."),
    ] = None,
    templates: Annotated[
        str | None, typer.Option("--templates", help=f"Templates a child may use: {LIST_HELP}.")
    ] = None,
    capabilities: Annotated[
        str | None, typer.Option("--capabilities", help=f"Capabilities a child may have: {LIST_HELP}.")
    ] = None,
    skills: Annotated[str | None, typer.Option("--skills", help=f"Skills a child may hold: {LIST_HELP}.")] = None,
    hosts: Annotated[
        str | None, typer.Option("--hosts", help=f"Hosts a child may be placed on besides its parent's: {LIST_HELP}.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create or change a tenant's spawn policy; what is not given is kept (a new one starts from
    the defaults: denied, 3 children, depth 1, 10/h, empty lists). A child's policy can only
    narrow its parent's (exit 7 names what would widen it)."""
    from colibri.services.policy.admin import PolicyChange

    change = PolicyChange(allow, max_children, max_depth, rate, templates, capabilities, skills, hosts)
    _show(_admin(ctx).set(tenant, change), as_json)


@policy_app.command("global")
def global_switch(
    ctx: typer.Context,
    forbid: Annotated[
        bool | None,
        typer.Option(
            "--forbid/--allow",
            help="Forbid all self-spawn on every tenant of every host at once, or lift that (tenants' policies apply).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The global switch (no option: show it). --forbid wins over every tenant's policy."""
    admin = _admin(ctx)
    found = admin.global_state() if forbid is None else admin.set_global(forbid)
    state = "FORBIDDEN on every tenant" if found["forbid"] else "allowed where a tenant's policy allows it"
    output.show(found, as_json, text=f"self-spawn: {state} (changed {found['changed_at'] or 'never'})")


@policy_app.command("decisions")
def decisions(
    ctx: typer.Context,
    tenant: TenantArg,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (the newest), oldest first.")] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The tenant's spawn decisions from the audit trail (allow or deny, the rule, the reason), and
    what became of each grant (bound, used, released, swept)."""
    found = _admin(ctx).decisions(tenant, limit)
    if as_json:
        output.emit_json(found)
        return
    output.table(
        ("TIME", "ACTION", "DECISION", "RULE", "AGENT", "RESERVATION", "REASON"),
        (
            (d["ts"], d["action"], d["decision"] or d["detail"].get("state"), d["rule"], d["agent"],
             d["reservation"], d["reason"] or d["detail"].get("why") or d["child"] or _changes(d["detail"]))
            for d in found
        ),
    )  # fmt: skip


def _changes(detail: dict[str, Any]) -> str:
    """A policy.set entry's fields, ``key=value`` (lists comma-joined)."""
    return " ".join(
        f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in detail.items() if k != "created"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
