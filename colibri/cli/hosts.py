"""``colibri hosts``: the hosts of a hive, reached over SSH with pinned host keys."""

from pathlib import Path
from typing import Annotated, Any

import typer

from colibri.cli import context, output

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]
NameArg = Annotated[str, typer.Argument(help="The host's name (letters, digits, '-'), as tenants name it.")]
SHOW_KEYS = (
    "name", "ssh", "command", "host_keys", "liveness", "state", "lease_expires_at", "backend", "version",
    "tenants", "last_error", "enrolled_at", "checked_at", "pinned", "diverged", "stale_copies",
)  # fmt: skip

hosts_app = typer.Typer(
    help="The hosts of a hive (no command: list them, with liveness): add (host key pinned), show, check, remove.",
    invoke_without_command=True,
)


@hosts_app.callback()
def hosts(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the hosts: SSH reach, liveness (up, stale, lost or unknown, from each host's daemon
    lease), backend and version (from the last check) and how many tenants live there."""
    if ctx.invoked_subcommand is not None:
        return
    _list(ctx, as_json)


def _list(ctx: typer.Context, as_json: bool) -> None:
    found = context.get(ctx).hosts().list()
    if as_json:
        output.emit_json(found)
        return
    output.table(
        ("HOST", "SSH", "LIVENESS", "BACKEND", "VERSION", "TENANTS", "CHECKED"),
        ((h["name"], h["ssh"], h["liveness"], h["backend"], h["version"], h["tenants"], h["checked_at"])
         for h in found),
    )  # fmt: skip


@hosts_app.command("list")
def list_hosts(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """List the hosts (the same as plain `colibri hosts`)."""
    _list(ctx, as_json)


@hosts_app.command("add")
def add(
    ctx: typer.Context,
    name: NameArg,
    ssh: Annotated[str, typer.Option("--ssh", help="USER@ADDRESS[:PORT] (IPv6: USER@[ADDRESS]:PORT).")],
    host_key: Annotated[
        list[str] | None,
        typer.Option(
            "--host-key",
            help="The host's SSH public key line, e.g. 'ssh-ed25519 AAAA...', read out of band "
            "(its console: cat /etc/ssh/ssh_host_ed25519_key.pub). Repeatable.",
            show_default=False,
        ),
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option(
            "--known-hosts",
            help="Pin the keys this known_hosts file (or .pub file) holds for the address.",
            show_default=False,
        ),
    ] = None,
    command: Annotated[
        str | None,
        typer.Option(
            "--command", help="The remote colibri's absolute path (default: colibri on its PATH).", show_default=False
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Enrol a host. Nothing connects: the host key is pinned as given (no trust on first use);
    `colibri hosts check NAME` is the first connection. See runbooks/add-host.md."""
    host = context.get(ctx).hosts().add(name, ssh, host_key or [], command, known_hosts)
    text = f"host {host['name']}: enrolled ({host['ssh']}); check it: colibri hosts check {host['name']}"
    output.show(host, as_json, text=text)


@hosts_app.command("show")
def show(ctx: typer.Context, name: NameArg, as_json: JsonFlag = False) -> None:
    """Show one host: its SSH reach, pinned key fingerprints, liveness, last check, and whether
    the hive's database agrees with this orchestrator's pin (diverged: nothing is sent to it)."""
    _show(context.get(ctx).hosts().show(name), as_json)


def _show(host: dict[str, Any], as_json: bool) -> None:
    if as_json:
        output.emit_json(host)
        return
    shown = dict(host)
    shown["host_keys"] = ", ".join(f"{k['type']} {k['fingerprint']}" for k in host["host_keys"])
    shown["stale_copies"] = ", ".join(host.get("stale_copies") or []) or None
    keys = list(SHOW_KEYS)
    found = host.get("found")
    if isinstance(found, dict):
        programs = found.get("programs") or {}
        shown["found"] = (
            f"colibri {found.get('version')} (python {found.get('python')}), backend {found.get('backend')} "
            f"({'ready' if found.get('backend_ready') else 'NOT ready'}: "
            + ", ".join(f"{p} {'at ' + str(w) if w else 'missing'}" for p, w in programs.items())
            + ")"
        )
        keys.append("found")
    output.fields(shown, keys)


@hosts_app.command("check")
def check(ctx: typer.Context, name: NameArg, as_json: JsonFlag = False) -> None:
    """Connect with the pinned key, run the remote `colibri version --json`: refuse another major
    version (exit 20), report the backend found there and whether its programs exist (exit 20 when
    not). It connects with this orchestrator's own pin, and fails with 19 while the hive's database
    row disagrees with it. A host that answers as itself has the stale copies it is owed a destroy
    of (after move-tenant) destroyed. What it found is recorded (see `colibri hosts`)."""
    report = context.get(ctx).hosts().check(name)
    if report.error is None:
        _show(report.host, as_json)
        return
    if as_json:
        output.emit_json_failure(report.host, report.error)
        raise typer.Exit(report.error.exit_code)
    raise report.error


@hosts_app.command("remove")
def remove(ctx: typer.Context, name: NameArg, as_json: JsonFlag = False) -> None:
    """Forget a host (refused while tenants live there, or while its daemon holds a live lease: exit 5;
    stop that daemon first). Its host keys are unpinned."""
    host = context.get(ctx).hosts().remove(name)
    output.show(host, as_json, text=f"host {host['name']}: removed")


def register(app: typer.Typer) -> None:
    app.add_typer(hosts_app, name="hosts")
