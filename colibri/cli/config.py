"""``colibri version`` and ``colibri config show``."""

import platform
from typing import Annotated

import typer

from colibri import __version__
from colibri.cli import context, output

config_app = typer.Typer(help="Inspect colibri's settings.", no_args_is_help=True)


def version(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False
) -> None:
    """Print colibri's version (with --json also its Python, its jail backend and whether the
    backend's programs are there: what `colibri hosts check` reads on a remote host)."""
    if as_json:
        from colibri.errors import ConfigError
        from colibri.services.hosts.ops import version_report

        try:
            report = version_report(context.get(ctx).settings)
        except ConfigError as exc:  # the version still shows; the settings' problem is named
            report = {"version": __version__, "python": platform.python_version(), "settings_error": str(exc)}
        output.emit_json(report)
    else:
        output.line(f"colibri {__version__}")


@config_app.command("show")
def show(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
    """Show the effective settings and where each came from (default, file or env). Secrets are masked."""
    from colibri.settings import describe

    cli_ctx = context.get(ctx)
    values = describe(cli_ctx.settings)
    sources = cli_ctx.sources
    if as_json:
        output.emit_json({name: {"value": values[name], "source": sources[name]} for name in values})
        return
    output.table(("SETTING", "VALUE", "SOURCE"), ((n, _text(values[n]), sources[n]) for n in values))


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def register(app: typer.Typer) -> None:
    app.command("version")(version)
    app.add_typer(config_app, name="config")
