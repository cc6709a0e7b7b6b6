"""``register-tenant``, ``list-tenants``, ``show-tenant``, ``remove-tenant``."""

import contextlib
import gc
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from colibri.cli import context, output
from colibri.domain import TenantStatus, Tier
from colibri.errors import InvalidInput

if TYPE_CHECKING:
    from colibri.services.tenants import BatchItem

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]
TenantArg = Annotated[str, typer.Argument(help="Tenant id: also the jail name and the collection name.")]
TenantsArg = Annotated[
    list[str] | None,
    typer.Argument(help="Tenant id(s): also the jail name and the collection name.", show_default=False),
]
FromFile = Annotated[
    Path | None,
    typer.Option(
        "--from-file",
        help="Also the tenant ids in FILE, one per line ('#' comments, blank lines skipped); '-' reads stdin.",
        show_default=False,
    ),
]

SHOW_KEYS = (
    "tenant_id", "jail_name", "collection_name", "collection_id", "host", "status", "spawn_step", "backend",
    "jail_root", "ip_address", "uid_base", "agent_uid", "adopted", "secrets_status", "secrets_error",
    "secrets_changed_at", "tier",
    "created_at", "updated_at", "last_error", "parent", "children",
)  # fmt: skip
TierOption = Annotated[
    Tier | None,
    typer.Option(
        help=(
            "Supply-chain tier of a new tenant. paid (the default, fail-safe): only first-party skills, signed "
            "and pinned in this host's repository, enter its jail. community: also the skills the operator "
            "allowed explicitly, at the operator's own risk. A registered tenant's tier changes only with "
            "'colibri set-tier'."
        ),
        show_default=False,
    ),
]


def register_tenant(
    ctx: typer.Context,
    tenants: TenantsArg = None,
    collection: Annotated[
        str | None,
        typer.Option(
            help="Vaultwarden collection name (default: the tenant id). '' for none (the only value with several).",
            show_default=False,
        ),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            help="Host that runs the tenant's jail: this host (the default) or one enrolled with 'colibri hosts add'.",
            show_default=False,
        ),
    ] = None,
    tier: TierOption = None,
    from_file: FromFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Record tenants. Registering one again with the same fields changes nothing.

    Several tenants (or --from-file) are each registered on their own, one failure does not stop
    the others; one summary line, each outcome in --json, the exit code of the worst failure.
    """
    ids = tenant_ids(tenants, from_file)
    service = context.get(ctx).tenants()
    if len(ids) == 1 and from_file is None:
        result = service.register(ids[0], collection, host, tier)
        if as_json:
            output.emit_json({**result.tenant, "created": result.created})
        elif result.created:
            output.line(f"registered tenant {ids[0]}")
        else:
            output.line(f"tenant {ids[0]} is already registered (no change)")
        return
    if collection:  # tenant id == collection name, 1:1:1: one collection is never shared
        raise typer.BadParameter("with several tenants --collection can only be '' (none): each has its own")

    def one(tenant: str) -> tuple[str, str]:
        result = service.register(tenant, collection, host, tier)
        return ("registered", "") if result.created else ("unchanged", "already registered (no change)")

    run_batch_command(ids, one, as_json, "registrations")


def tenant_ids(tenants: list[str] | None, from_file: Path | None) -> list[str]:
    """The TENANT arguments, then the ids of --from-file (bounded, see parse_tenant_list)."""
    from colibri.services.tenants import MAX_LIST_BYTES, parse_tenant_list

    ids = list(tenants or [])
    if from_file is not None:
        source = "stdin" if str(from_file) == "-" else str(from_file)
        try:
            if str(from_file) == "-":
                data = sys.stdin.buffer.read(MAX_LIST_BYTES + 1)
            else:
                with open(from_file, "rb") as handle:
                    data = handle.read(MAX_LIST_BYTES + 1)
        except OSError as exc:
            raise InvalidInput(f"--from-file {source}: cannot read it: {exc.strerror}") from None
        ids += parse_tenant_list(data, f"--from-file {source}")
    if not ids:
        raise typer.BadParameter("give at least one TENANT (or --from-file with at least one id)")
    return ids


def run_batch_command(
    ids: list[str], action: Callable[[str], tuple[str, str]], as_json: bool, what: str
) -> list["BatchItem"]:
    """Run ``action`` for each tenant (progress on stderr, unless --json goes to a non-terminal),
    then one summary line, or with --json the per-tenant outcomes; end with the worst exit code."""
    from colibri.services.tenants import batch_failure, batch_summary, run_batch

    show = not as_json or sys.stderr.isatty()

    def progress(number: int, total: int, item: "BatchItem") -> None:
        if show:
            detail = f": {item.message}" if item.message else ""
            output.note(f"[{number}/{total}] {item.tenant_id}: {item.outcome}{detail}")

    items = run_batch(ids, action, progress)
    failure = batch_failure(items, what)
    shown = [i.public() for i in items]
    if as_json:
        if failure is None:
            output.emit_json(shown)
            return items
        output.emit_json_failure(shown, failure)
        raise typer.Exit(failure.exit_code)
    output.line(batch_summary(items))
    if failure is not None:
        raise failure
    return items


def list_tenants(
    ctx: typer.Context,
    status: Annotated[
        TenantStatus | None, typer.Option(help="Only tenants in this state (removed ones only this way).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List tenants, ordered by id."""
    with _collector_paused():
        _print_tenants(context.get(ctx).tenants().all(status), as_json)


def _print_tenants(tenants: Sequence[Mapping[str, Any]], as_json: bool) -> None:
    if as_json:
        output.emit_json(tenants)
        return
    output.table(
        ("TENANT", "STATUS", "HOST", "TIER", "SKILLS", "COLLECTION", "UPDATED"),
        (
            (t["tenant_id"], t["status"], t["host"], t["tier"], _skill_names(t), t["collection_name"], t["updated_at"])
            for t in tenants
        ),
    )


def _skill_names(tenant: Mapping[str, Any]) -> str:
    return ",".join(f"{s['name']}@{s['version']}" for s in tenant.get("skills") or []) or "-"


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a long listing is built, printed and freed.

    10,000 tenants make some 100,000 container objects, none of them in a cycle (reference
    counting frees them all); left on, the collector runs hundreds of passes over them and over
    everything the imports made, which cost a sixth of ``list-tenants --json``'s time.  The
    listing is freed before the collector is back on, or its first pass would scan it all.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def show_tenant(ctx: typer.Context, tenant: TenantArg, as_json: JsonFlag = False) -> None:
    """Show one tenant, with its parent and children (agents that spawned agents)."""
    from colibri.cli import children

    cli = context.get(ctx)
    record: dict[str, Any] = {**cli.tenants().show(tenant), **children.family(cli, tenant)}
    if as_json:
        output.emit_json(record)
        return
    output.fields(dict(record), SHOW_KEYS)
    skills = record.get("skills") or []
    output.line(f"skills ({len(skills)} installed){':' if skills else ''}")
    if skills:
        output.table(
            ("NAME", "VERSION", "SOURCE", "DIGEST", "CAPABILITIES", "INSTALLED"),
            (_skill_row(s) for s in skills),
        )


def _skill_row(skill: Mapping[str, Any]) -> tuple[object, ...]:
    caps = ",".join(skill["capabilities"]) or "-"
    return (skill["name"], skill["version"], skill["source"], skill["digest"], caps, skill["installed_at"])


def set_tier(
    ctx: typer.Context,
    tenant: TenantArg,
    tier: Annotated[Tier, typer.Argument(help="paid (first-party skills only) or community (also allowed ones).")],
    as_json: JsonFlag = False,
) -> None:
    """Change a tenant's supply-chain tier (recorded in the audit log).

    community lets the skills the operator allowed explicitly into the tenant's jail at the
    operator's own risk; back to paid is refused while such a skill is installed (spawn the
    tenant again without it first). Skills already in the jail are not touched: the next
    spawn-agent installs by the new tier.
    """
    record, changed = context.get(ctx).tenants().set_tier(tenant, tier)
    if as_json:
        output.emit_json({**record, "changed": changed})
    elif changed:
        output.line(f"tenant {tenant} is now {tier}")
    else:
        output.line(f"tenant {tenant} is already {tier} (no change)")


def remove_tenant(
    ctx: typer.Context,
    tenants: TenantsArg = None,
    destroy_jail: Annotated[
        bool, typer.Option("--destroy-jail", help="Destroy the tenant's jail first (never an adopted one).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before destroying the jail.")] = False,
    cascade: Annotated[
        bool,
        typer.Option("--cascade", help="Also destroy the tenant's children (deepest first) with their jails and rows."),
    ] = False,
    from_file: FromFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Mark tenants removed. Refused while a tenant may still have a jail, unless --destroy-jail,
    and while it has children (agents its agents spawned), unless --cascade.

    Several tenants (or --from-file) are each removed on their own, one failure does not stop the
    others; one summary line, each outcome in --json, the exit code of the worst failure.
    """
    ids = tenant_ids(tenants, from_file)
    batch = len(ids) > 1 or from_file is not None
    if (destroy_jail or cascade) and not yes:
        children_too = " with all its children and their jails" if cascade else ""
        confirm_destroy(ids, from_file, "and remove the tenant" + children_too, "and remove each tenant" + children_too)
    from colibri.cli import children

    service = children.cascade(context.get(ctx))
    if not batch:
        record, removed = service.remove(ids[0], destroy_jail=destroy_jail, cascade=cascade)
        if as_json:
            output.emit_json({**record, "children_removed": removed})
        else:
            output.line(f"removed tenant {ids[0]}" + (f" and its children {' '.join(removed)}" if removed else ""))
        return

    def one(tenant: str) -> tuple[str, str]:
        _, removed = service.remove(tenant, destroy_jail=destroy_jail, cascade=cascade)
        return "removed", " ".join(removed)

    run_batch_command(ids, one, as_json, "removals")


def confirm_destroy(ids: list[str], from_file: Path | None, one: str, several: str) -> None:
    """Ask once for the whole batch; stdin that carried the ids cannot answer too."""
    if from_file is not None and str(from_file) == "-":
        raise typer.BadParameter("--from-file - reads the tenant ids from stdin, so nothing can answer: add --yes")
    unique = list(dict.fromkeys(ids))
    if len(unique) == 1:
        question = f"Destroy the jail of tenant {unique[0]} {one}?"
    else:
        shown = ", ".join(unique[:10]) + (", ..." if len(unique) > 10 else "")
        question = f"Destroy the jails of {len(unique)} tenants ({shown}) {several}?"
    if not typer.confirm(question):
        raise typer.Abort()


def register(app: typer.Typer) -> None:
    app.command("register-tenant")(register_tenant)
    app.command("list-tenants")(list_tenants)
    app.command("show-tenant")(show_tenant)
    app.command("remove-tenant")(remove_tenant)
    app.command("set-tier")(set_tier)
