"""The colibri command line.  Commands are thin: parse, call one service method, render.

Errors raised below (ColibriError) are turned into one line on stderr and an exit code here, in
``main()``, and nowhere else.
"""

import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from colibri.cli import context, output
from colibri.errors import EXIT_CODES, INTERNAL_ERROR_EXIT, ColibriError

EPILOG = "Exit codes: " + "; ".join(f"{code} {text.split(' (')[0]}" for code, text in EXIT_CODES.items())

app = typer.Typer(
    name="colibri",
    no_args_is_help=True,
    help="Run private AI agents in FreeBSD jails: one tenant = one jail = one Vaultwarden collection.",
    epilog=EPILOG,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (TOML). Default /usr/local/etc/colibri/colibri.toml. [env var: COLIBRI_CONFIG]",
            show_default=False,
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show a traceback on errors.")] = False,
) -> None:
    """Run private AI agents in FreeBSD jails: one tenant = one jail = one Vaultwarden collection."""
    injected = ctx.obj if isinstance(ctx.obj, context.Adapters) else context.Adapters()
    ctx.obj = context.Context(config_path=config, debug=debug, adapters=injected)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    from colibri.cli import config as config_cmds
    from colibri.cli import jails, tenants

    tenants.register(app)
    jails.register(app)
    config_cmds.register(app)
    from colibri.cli import vault

    vault.register(app)
    from colibri.cli import daemon, hive

    daemon.register(app)
    hive.register(app)
    from colibri.cli import hosts, remote

    hosts.register(app)
    remote.register(app)
    from colibri.cli import audit

    audit.register(app)
    from colibri.cli import skills

    skills.register(app)
    from colibri.cli import policy

    policy.register(app)


_register()


def run(argv: list[str], adapters: "context.Adapters | None" = None) -> int:
    """Run one command line and return its exit code (``main`` without ``sys.exit``).

    A ColibriError is one line (or the JSON error envelope) and its exit code.  Anything else is
    a bug: one line naming only the exception's type (its text may hold a value colibri would not
    show), exit INTERNAL_ERROR_EXIT, the traceback only with ``--debug`` (never its locals).
    ``adapters``: fakes in place of the real adapters (tests).
    """
    as_json = "--json" in argv
    debug = "--debug" in argv
    _lenient_stdout()
    try:
        app(args=argv, prog_name="colibri", obj=adapters)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ColibriError as exc:
        if debug:
            traceback.print_exc()
        output.error(str(exc), as_json=as_json, kind=type(exc).__name__, code=exc.exit_code)
        return exc.exit_code
    except Exception as exc:  # the last resort: a bug, not the operator's mistake
        if debug:
            traceback.print_exc()
        hint = "" if debug else "; run it again with --debug for the traceback"
        output.error(
            f"internal error ({type(exc).__name__}){hint}; please report it",
            as_json=as_json,
            kind="InternalError",
            code=INTERNAL_ERROR_EXIT,
        )
        return INTERNAL_ERROR_EXIT
    return 0


def _lenient_stdout() -> None:
    """A terminal or pipe that cannot encode a character (LANG=C on an old system, an ASCII
    PYTHONIOENCODING) gets ``\\xfc`` for it, as stderr already does, not a UnicodeEncodeError."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="backslashreplace")


def main() -> None:
    """Entry point of the ``colibri`` script: run the app and map errors to exit codes."""
    sys.exit(run(sys.argv[1:]))
