"""``colibri provision`` and ``colibri vault login|status|check``."""

import sys
from typing import Annotated, Any

import typer

from colibri.cli import context, output
from colibri.errors import InvalidInput, PartialFailure, SecretsRefused

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]

MAX_STDIN_BYTES = 64 * 1024
"""``vault login --stdin`` reads three lines; more than this is not credentials."""

vault_app = typer.Typer(
    name="vault", no_args_is_help=True, help="The operator's Vaultwarden credentials and the bw CLI."
)


def _render(result: dict[str, Any]) -> None:
    where = f" -> {result['path']}" if result.get("path") else ""
    output.line(f"{result['tenant_id']}: {result['outcome']}: {result['message']}{where}")


def provision(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Argument(help="Tenant id (omit with --all).", show_default=False)] = None,
    all_tenants: Annotated[
        bool, typer.Option("--all", help="Every tenant with a jail, on every host: one vault session for all.")
    ] = False,
    rebind: Annotated[
        bool, typer.Option("--rebind", help="Resolve the collection by name again, forgetting its stored id.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a tenant's secrets (its collection, or a staged provider.env) to the 0600 .env in its jail.

    Fail-closed: on any refusal (the vault, an unsafe path or .env, the operator's credentials,
    bw missing or timed out, a key or value that cannot be written) the old .env is kept, the
    tenant is marked stale and the exit code is 12; every bad key and value is named at once (by
    key and origin, never a value). An unknown tenant is 4. With --json a failure still carries
    the per-tenant report: {"ok": false, "data": ..., "error": ...}.
    """
    if (tenant is None) == (not all_tenants):
        raise typer.BadParameter("give a TENANT or --all (not both)")
    if tenant is not None and not tenant:  # `provision "$T"` with T unset must not mean every tenant
        raise InvalidInput("the TENANT given is empty (use --all for every tenant)")
    service = context.get(ctx).secrets()
    if tenant is not None:
        _one(service.provision(tenant, rebind=rebind, check=False), as_json)
        return
    from colibri.services.secrets_report import interruption

    results = service.provision_all()
    shown = [r.public() for r in results]
    failed = [r for r in results if r.error is not None]
    if not as_json:
        for record in shown:
            _render(record)
    stopped = interruption(results)  # a Ctrl-C: the report all the same, then exit 130
    if not failed and stopped is None:
        if as_json:
            output.emit_json(shown)
        return
    names = ", ".join(r.tenant_id for r in failed[:20]) + (f" and {len(failed) - 20} more" if len(failed) > 20 else "")
    error = stopped or PartialFailure(
        f"{len(failed)} of {len(results)} tenants failed: {names}",
        max(r.error.exit_code for r in failed if r.error is not None),
    )
    if not as_json:
        raise error
    output.emit_json_failure(shown, error)
    raise typer.Exit(error.exit_code)


def _one(result: Any, as_json: bool) -> None:
    """One tenant's outcome; a failure names every problem (stderr, or in the JSON report)."""
    error = result.error
    if error is None:
        if as_json:
            output.emit_json(result.public())
        else:
            _render(result.public())
        return
    if as_json:
        output.emit_json_failure(result.public(), error)
        raise typer.Exit(error.exit_code)
    if not isinstance(error, SecretsRefused):
        raise error
    output.error(f"{error.summary}; the old .env is kept:", as_json=False)
    for problem in error.problems:
        output.note(f"  {problem}")
    if error.total > len(error.problems):
        output.note(f"  and {error.total - len(error.problems)} more")
    raise typer.Exit(error.exit_code)


def _read_credentials(from_stdin: bool) -> Any:
    from pydantic import SecretStr  # here, not at the top: pydantic costs ~40% of `colibri --help`

    from colibri.adapters.credentials import OperatorCredentials

    names = ("client id", "client secret", "master password")
    if from_stdin:
        stream = getattr(sys.stdin, "buffer", None)  # bytes: non-UTF-8 input is refused, not a traceback
        data = stream.read(MAX_STDIN_BYTES + 1) if stream else sys.stdin.read(MAX_STDIN_BYTES + 1).encode()
        if len(data) > MAX_STDIN_BYTES:
            raise InvalidInput(f"--stdin: more than {MAX_STDIN_BYTES} bytes; it wants three short lines")
        try:
            lines = data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            raise InvalidInput("--stdin is not valid UTF-8 text") from None
        if len(lines) < 3 or not all(lines[:3]):
            raise InvalidInput("--stdin wants three lines: client id, client secret, master password")
        values = lines[:3]
    else:
        values = [
            typer.prompt("API key client_id (user.…)"),
            typer.prompt("API key client_secret", hide_input=True),
            typer.prompt("Master password", hide_input=True),
        ]
    for name, value in zip(names, values, strict=True):
        _check_credential(name, value)
    return OperatorCredentials(*(SecretStr(v) for v in values))


def _check_credential(name: str, value: str) -> None:
    """Refuse what bw, the keyring or a credentials file cannot carry (the value is never shown)."""
    if "\0" in value:
        raise InvalidInput(f"the {name} contains a NUL byte; refused")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise InvalidInput(f"the {name} contains a control character (CR? tab?); refused")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"the {name} is not valid UTF-8 text") from None


@vault_app.command("login")
def login(
    ctx: typer.Context,
    files: Annotated[
        bool,
        typer.Option("--files", help="Store in vault_credentials_dir (headless hosts) instead of the keyring."),
    ] = False,
    from_stdin: Annotated[
        bool, typer.Option("--stdin", help="Read client id, client secret, master password as 3 lines.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Prove the operator's API key and master password against the vault, then store them."""
    credentials = _read_credentials(from_stdin)
    result = context.get(ctx).vault().login(credentials, "files" if files else "keyring")
    if as_json:
        output.emit_json(result)
    else:
        output.line(f"logged in; credentials stored in {result['stored_in']}")
        output.line(f"collections visible: {len(result['collections'])}")


@vault_app.command("status")
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Show what is configured and whether it works (never a credential's value)."""
    result = context.get(ctx).vault().status()
    if as_json:
        output.emit_json(result)
        return
    present = result.get("credentials") or {}
    shown = {**result, "credentials": ", ".join(f"{k} {'set' if v else 'MISSING'}" for k, v in present.items())}
    shown["problems"] = "; ".join(result["problems"]) or None
    keys = [k for k in shown if k != "problems"] + ["problems"]
    output.fields(shown, keys)


@vault_app.command("check")
def check(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Unlock the vault, sync and list the organization's collections, then lock it again."""
    result = context.get(ctx).vault().check()
    if as_json:
        output.emit_json(result)
    else:
        output.line(
            f"vault OK: {len(result['collections'])} collections, {result['items']} items "
            f"({result['bw_calls']} bw calls)"
        )


def register(app: typer.Typer) -> None:
    app.command("provision")(provision)
    app.add_typer(vault_app)
