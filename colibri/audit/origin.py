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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

Vouch = Callable[[], bytes]
"""This host's entry key (adapters/audit_keys.py ``KeyDir.entry_key``), read when an entry is written."""


@dataclass(frozen=True)
class Origin:
    host: str
    actor: str
    vouch: Vouch | None = field(default=None, compare=False, repr=False)
    """The key whose MAC marks an entry as written by this host (None: no MAC, its signer refuses it)."""


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


def set_origin(host: str, actor: str, vouch: Vouch | None = None) -> None:
    """Set the origin for the rest of this context (the CLI does this once, at start); ``vouch``:
    this host's entry key (its entries carry its MAC)."""
    _ORIGIN.set(Origin(host, actor, vouch))


@contextlib.contextmanager
def acting(actor: str, host: str | None = None, vouch: Vouch | None = None) -> Iterator[Origin]:
    """Record what happens inside under ``actor`` (and ``host``, default the current one); the
    current entry key goes with it only while the host stays the current one."""
    now = current()
    inherited = now.vouch if host in (None, now.host) else None
    origin = Origin(now.host if host is None else host, actor, vouch if vouch is not None else inherited)
    token = _ORIGIN.set(origin)
    try:
        yield origin
    finally:
        _ORIGIN.reset(token)
