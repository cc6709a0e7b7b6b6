"""``colibri daemon`` (the hive, in the foreground) and ``colibri daemon status``."""

from pathlib import Path
from typing import Annotated, Literal

import typer

from colibri.cli import context, output

daemon_app = typer.Typer(
    help="The hive daemon: runs in the foreground (rc.d wraps it in daemon(8)).", invoke_without_command=True
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON (see README, 'JSON output').")]


@daemon_app.callback()
def daemon(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Config file (TOML); same as the global --config.", show_default=False),
    ] = None,
    log_target: Annotated[
        Literal["stderr", "syslog"] | None,
        typer.Option(
            "--log-target", help="Where to log (default: the log_target setting). [env var: COLIBRI_LOG_TARGET]"
        ),
    ] = None,
) -> None:
    """Run the hive daemon in the foreground: admin and agent sockets, liveness, task routing.

    SIGHUP reloads the settings; SIGTERM stops it cleanly (exit 0).
    """
    if ctx.invoked_subcommand is not None:
        return
    cli_ctx = context.get(ctx)
    if config is not None:
        cli_ctx.config_path = config
    cli_ctx.run_daemon(log_target)


@daemon_app.command("status")
def status(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Ask the running daemon for its health: version, store, backend, agents by state, queue depth."""
    health = context.get(ctx).daemon_client().health()
    if as_json:
        output.emit_json(health)
        return
    agents = ", ".join(f"{n} {state}" for state, n in health["agents"].items())
    fleet = health.get("fleet") or {}
    lease = f"term {fleet['term']}, {fleet['lease']}" if fleet else None
    output.fields(
        {
            **health,
            "agents": agents or "none",
            "host": fleet.get("host"),
            "host_lease": lease,
            "outbox": fleet.get("outbox"),
        },
        (
            *("status", "version", "store", "backend", "host", "host_lease", "outbox", "agents", "queue_depth"),
            *("heartbeat_interval", "sockets"),
            *("rss_bytes", "open_fds", "connections"),
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(daemon_app, name="daemon")
