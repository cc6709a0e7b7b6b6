"""``spawn-agent``, ``spawn-local``, ``start-agent``, ``stop-agent``, ``destroy-agent``, ``release-agent``,
``reconcile``, ``move-tenant``: each goes to the tenant's host (services/lifecycle/routing.py)."""

from pathlib import Path
from typing import Annotated

import typer

from colibri.cli import context, output
from colibri.cli.tenants import FromFile, TenantsArg
from colibri.errors import ColibriError, PartialFailure

JsonFlag = Annotated[bool, typer.Option("--json", help="JSON output; progress as one JSON object per line.")]
TenantArg = Annotated[str, typer.Argument(help="Tenant id (== jail name).")]
Capabilities = Annotated[
    list[str] | None,
    typer.Option("--capability", help="Capability the agent offers: NAME or NAME@VERSION (repeatable)."),
]
Skills = Annotated[
    list[str] | None,
    typer.Option(
        "--skill",
        help=(
            "Skill to install in the jail: NAME or NAME@VERSION (repeatable; the newest in the index without "
            "@VERSION). Verified on this host (the tenant's host) against its pinned root before anything is "
            "created: a paid tenant gets signed first-party skills only, a community tenant also the ones the "
            "operator allowed; a refusal is exit 22 and changes nothing. Given, it is the tenant's whole set "
            "(besides the mother); without it the recorded set is checked again, not fetched."
        ),
    ),
]


def spawn_agent(
    ctx: typer.Context,
    tenants: Annotated[list[str], typer.Argument(help="Tenant id(s); several are spawned in parallel.")],
    template: Annotated[str | None, typer.Option(help="Jail template (default: setting jail_template).")] = None,
    capability: Capabilities = None,
    skill: Skills = None,
    jail_name: Annotated[str | None, typer.Option(help="Adopt this existing jail (needs --jail-root).")] = None,
    jail_root: Annotated[Path | None, typer.Option(help="Root path of the jail to adopt.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create and start each tenant's jail, provision its secrets, start its mother skill.

    Each tenant is spawned on its host (register-tenant --host): another host's over SSH, its
    secrets rendered here and only the .env text sent. Safe to run again: it resumes where a
    previous run stopped and converges. --jail-name and --jail-root adopt an existing jail
    instead of creating one (colibri will never destroy it): everything is checked before
    anything changes, and a failed adoption is undone.
    """
    cli = context.get(ctx)
    if (jail_name is None) != (jail_root is None):
        raise typer.BadParameter("--jail-name and --jail-root go together")
    if jail_name is not None and len(tenants) != 1:
        raise typer.BadParameter("adopting a jail takes exactly one tenant")
    adopt = (jail_name, jail_root) if jail_name is not None and jail_root is not None else None
    printer = output.StepPrinter(as_json)
    service = cli.lifecycle()  # each tenant on its own host
    try:
        if len(tenants) == 1:
            record = service.spawn(
                tenants[0], template=template, capabilities=capability, adopt=adopt, on_step=printer, skills=skill
            )
            _done([record["tenant_id"]], as_json)
            return
        errors = service.spawn_many(
            tenants,
            cli.settings.spawn_parallelism,
            on_step=printer,
            template=template,
            capabilities=capability,
            skills=skill,
        )
    finally:
        printer.close()
    _report_many(errors, as_json)


def _done(tenants: list[str], as_json: bool) -> None:
    if as_json:
        output.emit_json_line({"ok": True, "active": tenants})
    else:
        output.line(f"active: {' '.join(tenants)}")


def _report_many(errors: dict[str, ColibriError | None], as_json: bool) -> None:
    failed = {t: e for t, e in errors.items() if e is not None}
    _done([t for t, e in errors.items() if e is None], as_json)
    if failed:
        worst = max(e.exit_code for e in failed.values())
        summary = "; ".join(f"{t}: {e}" for t, e in failed.items())
        raise PartialFailure(f"{len(failed)} of {len(errors)} spawns failed: {summary}", worst)


def spawn_local(
    ctx: typer.Context,
    tenant: TenantArg,
    home: Annotated[Path, typer.Option(help="Home directory the agent runs in (its .env goes here).")],
    capability: Capabilities = None,
    as_json: JsonFlag = False,
) -> None:
    """Run a tenant's agent without a jail: secrets into HOME/.env, the mother as a host process."""
    printer = output.StepPrinter(as_json)
    try:
        context.get(ctx).lifecycle().spawn_local(tenant, home, capabilities=capability, on_step=printer)
    finally:
        printer.close()
    _done([tenant], as_json)


def start_agent(ctx: typer.Context, tenant: TenantArg, as_json: JsonFlag = False) -> None:
    """Start a stopped agent's jail and wait for its mother skill's ready line (exit 17 with the
    mother's own reason when it refuses; the jail is then stopped again)."""
    output.show(context.get(ctx).lifecycle().start(tenant), as_json, text=f"started {tenant}")


def stop_agent(ctx: typer.Context, tenant: TenantArg, as_json: JsonFlag = False) -> None:
    """Stop an agent's jail; the tenant becomes 'stopped'."""
    output.show(context.get(ctx).lifecycle().stop(tenant), as_json, text=f"stopped {tenant}")


def destroy_agent(
    ctx: typer.Context,
    tenants: TenantsArg = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    from_file: FromFile = None,
    as_json: JsonFlag = False,
) -> None:
    """Destroy tenants' jails (never one colibri did not create). The tenants stay registered.

    Several tenants (or --from-file) are each destroyed on their own, one failure does not stop
    the others; one summary line, each outcome in --json, the exit code of the worst failure.
    """
    from colibri.cli.tenants import confirm_destroy, run_batch_command, tenant_ids

    ids = tenant_ids(tenants, from_file)
    if not yes:
        confirm_destroy(ids, from_file, "and everything in it", "and everything in them")
    service = context.get(ctx).lifecycle()
    if len(ids) == 1 and from_file is None:
        output.show(service.destroy(ids[0]), as_json, text=f"destroyed the jail of {ids[0]}")
        return
    from colibri.domain import HAS_JAIL

    registry = context.get(ctx).tenants()

    def one(tenant: str) -> tuple[str, str]:
        had_jail = registry.show(tenant)["status"] in HAS_JAIL
        service.destroy(tenant)
        return ("destroyed", "") if had_jail else ("unchanged", "it has no jail")

    run_batch_command(ids, one, as_json, "destroys")


def release_agent(ctx: typer.Context, tenant: TenantArg, as_json: JsonFlag = False) -> None:
    """Hand an adopted jail back: undo what colibri added to it and forget it.

    Stops the mother, removes the socket mount, the identity, the mother's files, the tenant's
    .env and what colibri enabled or created; each step is checked and named. The jail itself
    stays as it is (running or not).
    """
    from colibri.services.lifecycle.adoption import describe

    record = context.get(ctx).lifecycle().release(tenant)
    removed = record.get("removed")
    said = describe(removed if isinstance(removed, list) else [])
    output.show(record, as_json, text=f"released the adopted jail of {tenant}; removed: {said}")


def reconcile(
    ctx: typer.Context,
    apply: Annotated[bool, typer.Option("--apply", help="Repair what is safe to repair (default: report).")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Compare the store with the jails of every host (this one and each enrolled host) and
    report (or --apply repairs for) each difference, naming its host.

    With --apply, a repair that fails is shown with its error and the exit code is 18. A host
    that cannot be reached is one failed item (unreachable_host); the exit code is then the
    highest of the failed items' (13 for an unreachable host).
    """
    from colibri.services.lifecycle.reconcile_hosts import describe, reconcile_failure

    if apply:  # children left half-way (issue 14): expired reservations settled, each child converged
        from colibri.cli import children

        for settled in children.settle(context.get(ctx)):
            output.note(f"child {settled.child}: {settled.outcome}")
    found = context.get(ctx).lifecycle().reconcile(apply=apply)
    drifts = describe(found)
    failure = reconcile_failure(found)
    if as_json:
        if failure is not None:
            output.emit_json_failure(drifts, failure)
            raise typer.Exit(failure.exit_code)
        output.emit_json(drifts)
        return
    if not drifts:
        output.line("no drift")
    else:
        output.table(
            ("HOST", "KIND", "JAIL", "TENANT", "ACTION", "APPLIED"),
            ((d["host"], d["kind"], d["jail"], d["tenant"], d["action"],
              f"failed: {d['error']}" if d["error"] else ("yes" if d["applied"] else "no"))
             for d in drifts),
        )  # fmt: skip
    if failure is not None:
        raise failure


def move_tenant(
    ctx: typer.Context,
    tenant: TenantArg,
    to: Annotated[str, typer.Option("--to", help="The host to move to: this host or an enrolled one.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before destroying the old jail.")] = False,
    old_host_lost: Annotated[
        bool,
        typer.Option(
            "--old-host-lost",
            help="The old host will never answer: forget its jail instead of destroying it (never an adopted one).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Move a tenant to another host: destroy its jail on the old host (the jail, its .env and
    mounts go with it; an adopted jail is refused), record the new host, then spawn it there
    with its secrets provisioned from the vault again (never copied from the old host).

    Safe to run again after any failure: it goes on from where it stopped (runbooks/move-tenant.md).
    """
    if not yes and not typer.confirm(f"Destroy the jail of tenant {tenant} on its host and spawn it on {to}?"):
        raise typer.Abort()
    printer = output.StepPrinter(as_json)
    try:
        old, _ = context.get(ctx).lifecycle().move(tenant, to, on_step=printer, old_host_lost=old_host_lost)
    finally:
        printer.close()
    if as_json:
        output.emit_json_line({"ok": True, "tenant": tenant, "from": old, "to": to})
    else:
        output.line(f"moved {tenant} from {old} to {to}: active")


def register(app: typer.Typer) -> None:
    app.command("spawn-agent")(spawn_agent)
    app.command("spawn-local")(spawn_local)
    app.command("start-agent")(start_agent)
    app.command("stop-agent")(stop_agent)
    app.command("destroy-agent")(destroy_agent)
    app.command("release-agent")(release_agent)
    app.command("reconcile")(reconcile)
    app.command("move-tenant")(move_tenant)
