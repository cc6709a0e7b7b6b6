"""``register-tenant``, ``list-tenants``, ``show-tenant``, ``remove-tenant``."""

import contextlib
import gc
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from colibri.cli import context, output
from colibri.domain import TenantStatus

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]
TenantArg = Annotated[str, typer.Argument(help="Tenant id: also the jail name and the collection name.")]

SHOW_KEYS = (
    "tenant_id", "jail_name", "collection_name", "collection_id", "host", "status", "spawn_step", "backend",
    "jail_root", "ip_address", "uid_base", "agent_uid", "adopted", "secrets_status", "secrets_error",
    "secrets_changed_at",
    "created_at", "updated_at", "last_error",
)  # fmt: skip


def register_tenant(
    ctx: typer.Context,
    tenant: TenantArg,
    collection: Annotated[
        str | None,
        typer.Option(help="Vaultwarden collection name (default: the tenant id). '' for none.", show_default=False),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(help="Host that runs the tenant's jail (default: this host).", show_default=False),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Record a tenant. Registering it again with the same fields changes nothing."""
    result = context.get(ctx).tenants().register(tenant, collection, host)
    if as_json:
        output.emit_json({**result.tenant, "created": result.created})
    elif result.created:
        output.line(f"registered tenant {tenant}")
    else:
        output.line(f"tenant {tenant} is already registered (no change)")


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


def _print_tenants(tenants: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        output.emit_json(tenants)
        return
    output.table(
        ("TENANT", "STATUS", "HOST", "COLLECTION", "UPDATED"),
        ((t["tenant_id"], t["status"], t["host"], t["collection_name"], t["updated_at"]) for t in tenants),
    )


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
    """Show one tenant."""
    record = context.get(ctx).tenants().show(tenant)
    if as_json:
        output.emit_json(record)
    else:
        output.fields(record, SHOW_KEYS)


def remove_tenant(
    ctx: typer.Context,
    tenant: TenantArg,
    destroy_jail: Annotated[
        bool, typer.Option("--destroy-jail", help="Destroy the tenant's jail first (never an adopted one).")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before destroying the jail.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Mark a tenant removed. Refused while the tenant may still have a jail, unless --destroy-jail."""
    if destroy_jail and not yes and not typer.confirm(f"Destroy the jail of tenant {tenant} and remove the tenant?"):
        raise typer.Abort()
    record = context.get(ctx).tenants().remove(tenant, destroy_jail=destroy_jail)
    if as_json:
        output.emit_json(record)
    else:
        output.line(f"removed tenant {tenant}")


def register(app: typer.Typer) -> None:
    app.command("register-tenant")(register_tenant)
    app.command("list-tenants")(list_tenants)
    app.command("show-tenant")(show_tenant)
    app.command("remove-tenant")(remove_tenant)
