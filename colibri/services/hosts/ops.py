"""The operations a host performs for the orchestrator over a kept SSH channel.

One registry, ``OPS``: an op's name to a function of ``(OpContext, args) -> result``.  Register an
op with ``@register("name")`` in any module and have ``handlers`` import that module (see
``_MODULES``) so ``colibri remote serve`` knows it.  A handler validates its own args (they are
the orchestrator's, but arrive as data), raises ColibriError for a refusal (the orchestrator raises
the same class), and returns a JSON object.  Args may hold a tenant's rendered .env: a handler
never logs them or puts them in an error message.
"""

import importlib
import platform
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from colibri import __version__
from colibri.settings import Settings

Result = dict[str, Any]
Op = Callable[["OpContext", Mapping[str, Any]], Result]
Handler = Callable[[Mapping[str, Any]], Result]

OPS: dict[str, Op] = {}
"""Every op ``remote serve`` answers, by name."""
_MODULES: tuple[str, ...] = ()
"""Modules that register more ops when imported (the control plane adds its own here)."""


@dataclass(frozen=True)
class OpContext:
    """What an op may use on the remote host: its own settings (its own colibri.toml)."""

    settings: Settings


def register(name: str) -> Callable[[Op], Op]:
    """``@register("spawn")`` adds a handler to ``OPS`` under ``name`` (once)."""

    def add(op: Op) -> Op:
        if name in OPS and OPS[name] is not op:
            raise ValueError(f"op {name!r} registered twice")
        OPS[name] = op
        return op

    return add


def handlers(context: OpContext) -> dict[str, Handler]:
    """Every registered op, bound to ``context``."""
    for module in _MODULES:
        importlib.import_module(module)
    return {name: _bind(op, context) for name, op in OPS.items()}


def _bind(op: Op, context: OpContext) -> Handler:
    return lambda args: op(context, args)


def backend_report(settings: Settings) -> Result:
    """The jail backend configured here and whether its programs are on the tool PATH."""
    from colibri.adapters.backends import tool_path

    sandbox = settings.jail_backend == "sandbox"
    programs = ("bwrap",) if sandbox else (settings.bastille_path, "jls", "jexec")
    path = tool_path()
    found = {program: shutil.which(program, path=path) for program in programs}
    return {
        "backend": settings.jail_backend,
        "programs": found,
        "missing": [program for program, where in found.items() if where is None],
        "backend_ready": all(found.values()),
    }


def version_report(settings: Settings) -> Result:
    """``colibri version --json`` and the ``version`` op: this colibri, its Python, its backend."""
    return {"version": __version__, "python": platform.python_version(), "host": settings.host,
            **backend_report(settings)}  # fmt: skip


@register("ping")
def ping(context: OpContext, args: Mapping[str, Any]) -> Result:
    """A round trip that does nothing (the link's liveness, and the benchmark)."""
    return {"pong": True}


@register("version")
def version(context: OpContext, args: Mapping[str, Any]) -> Result:
    return version_report(context.settings)
