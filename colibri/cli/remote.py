"""``colibri remote serve``: the far end of the orchestrator's kept SSH channel (hidden: only the
orchestrator runs it, as ``<command> remote serve`` on a host enrolled with ``hosts add``)."""

import os
import sys

import typer

from colibri.cli import context

remote_app = typer.Typer(help="What the orchestrator runs on a host over SSH.", no_args_is_help=True, hidden=True)


@remote_app.command("serve")
def serve(ctx: typer.Context) -> None:
    """Answer framed JSON requests on stdin (one per line) with answers on stdout, until EOF."""
    from colibri.services.hosts import ops
    from colibri.services.hosts.serve import serve as serve_loop

    ctxt = context.get(ctx)
    handlers = {**ops.handlers(ops.OpContext(ctxt.settings)), **ctxt.remote_ops()}
    _quiet_stderr()
    serve_loop(sys.stdin.buffer, sys.stdout.buffer, handlers)


def _quiet_stderr() -> None:
    """stderr goes nowhere: the orchestrator never reads it (it is this host's text), and a
    stream nobody reads would fill the SSH channel's window and stall the answers on stdout."""
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def register(app: typer.Typer) -> None:
    app.add_typer(remote_app, name="remote", hidden=True)
