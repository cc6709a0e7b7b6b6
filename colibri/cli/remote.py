"""``colibri remote serve``: the far end of the orchestrator's kept SSH channel (hidden: only the
orchestrator runs it, as ``<command> remote serve`` on a host enrolled with ``hosts add``)."""

import sys

import typer

from colibri.cli import context

remote_app = typer.Typer(help="What the orchestrator runs on a host over SSH.", no_args_is_help=True, hidden=True)


@remote_app.command("serve")
def serve(ctx: typer.Context) -> None:
    """Answer framed JSON requests on stdin (one per line) with answers on stdout, until EOF."""
    from colibri.services.hosts import ops
    from colibri.services.hosts.serve import serve as serve_loop

    handlers = ops.handlers(ops.OpContext(context.get(ctx).settings))
    serve_loop(sys.stdin.buffer, sys.stdout.buffer, handlers)


def register(app: typer.Typer) -> None:
    app.add_typer(remote_app, name="remote", hidden=True)
