"""Who a state change is recorded for: the host whose log it goes in, and the actor.

The CLI sets the origin once (this host's name, ``operator:uid=<uid>``); the daemon sets it per
request (``tenant:<t>`` / ``agent:<t>/<id>`` / ``lane:<l>/<id>`` from the socket the request came
on, never from what the request says) and ``daemon`` for its own loops (liveness, re-queues,
retention).  A context variable, so the daemon's database thread sees the origin of the request
it serves (``Daemon._call`` runs each store call in a copy of the caller's context).
"""

import contextlib
import contextvars
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    host: str
    actor: str


def operator_actor() -> str:
    """The operator running this process: its uid (and the sudo(8) user behind it, if any)."""
    sudo = os.environ.get("SUDO_USER", "")
    base = f"operator:uid={os.getuid()}"
    return f"{base}:sudo={sudo}" if sudo.isidentifier() and len(sudo) <= 32 else base


_ORIGIN: contextvars.ContextVar[Origin | None] = contextvars.ContextVar("colibri_audit_origin", default=None)


def current() -> Origin:
    """The origin in force; without one, this machine's node name and the operator's uid."""
    found = _ORIGIN.get()
    return found if found is not None else Origin(platform.node() or "localhost", operator_actor())


def set_origin(host: str, actor: str) -> None:
    """Set the origin for the rest of this context (the CLI does this once, at start)."""
    _ORIGIN.set(Origin(host, actor))


@contextlib.contextmanager
def acting(actor: str, host: str | None = None) -> Iterator[Origin]:
    """Record what happens inside under ``actor`` (and ``host``, default the current one)."""
    origin = Origin(host if host is not None else current().host, actor)
    token = _ORIGIN.set(origin)
    try:
        yield origin
    finally:
        _ORIGIN.reset(token)
