"""How a host of the hive is named and reached: its name, ``--ssh USER@ADDRESS[:PORT]``, the remote
colibri command, the pin a ``hosts`` row names and how it differs from the orchestrator's record,
and the liveness its daemon's lease shows.  Pure rules; ``enrol.py`` is the service that uses them.
"""

import ipaddress
import re
from typing import TYPE_CHECKING

from colibri.domain import JAIL_NAME, validate_host_name
from colibri.errors import InvalidInput

if TYPE_CHECKING:
    from colibri.adapters.ssh_transport import SshTarget
    from colibri.store.models import Host
    from colibri.store.orchestrator import Pin

HOST_NAME_MAX = 63
LEASE_GRACE = 30.0
"""Seconds past a host's lease before it is ``lost`` (between, it is ``stale``)."""
CLOCK_READ_SECONDS = 5.0
"""The database's clock is read again when this old (one query per command)."""
DEFAULT_COMMAND = "colibri"
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,31}", re.ASCII)
_SSH = re.compile(r"(?P<user>[^@]+)@(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<addr>[^:\[\]]+))(?::(?P<port>[0-9]{1,5}))?")
_PRINTABLE_PATH = re.compile(r"/[!-~]*", re.ASCII)


def validate_host_id(name: str) -> str:
    """A host's name: a tenant id's charset that is also a host name (letters, digits, '-'), so
    ``register-tenant --host NAME`` takes it.  Raises InvalidInput."""
    if not name or len(name) > HOST_NAME_MAX or not JAIL_NAME.fullmatch(name) or "_" in name:
        raise InvalidInput(
            f"invalid host name {name[:80]!r}: use ASCII letters, digits and '-', starting with a letter or digit, "
            f"at most {HOST_NAME_MAX} characters"
        )
    return validate_host_name(name)


def parse_ssh(spec: str) -> tuple[str, str, int]:
    """``USER@ADDRESS[:PORT]`` (``USER@[v6]:PORT`` for IPv6) as ``(user, address, port)``."""
    found = _SSH.fullmatch(spec)
    shown = spec[:120].encode("ascii", "backslashreplace").decode()
    if not found:
        raise InvalidInput(f"invalid --ssh {shown!r}: use USER@ADDRESS or USER@ADDRESS:PORT, e.g. root@10.0.0.2")
    user, port = found["user"], int(found["port"] or 22)
    if not _USER.fullmatch(user):
        raise InvalidInput(f"invalid --ssh {shown!r}: {user[:40]!r} is not a user name")
    if not 1 <= port <= 65535:
        raise InvalidInput(f"invalid --ssh {shown!r}: port {port} is not 1-65535")
    address = found["v6"] or found["addr"]
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if found["v6"] or address.isdigit():
            raise InvalidInput(f"invalid --ssh {shown!r}: {address!r} is not an address") from None
        validate_host_name(address)
    else:
        if ip.version == 6 and not found["v6"]:
            raise InvalidInput(f"invalid --ssh {shown!r}: write an IPv6 address in brackets, USER@[{address}]:PORT")
    return user, address, port


def validate_command(command: str | None) -> str:
    """The remote colibri: an absolute path of printable ASCII, or ``colibri`` on the remote PATH."""
    if command is None:
        return DEFAULT_COMMAND
    if len(command) > 1024 or not _PRINTABLE_PATH.fullmatch(command):
        raise InvalidInput("invalid --command: give the remote colibri's absolute path, e.g. /usr/local/bin/colibri")
    return command


def liveness(host: "Host", now: float, grace: float = LEASE_GRACE) -> str:
    """``up`` while its daemon's lease holds, ``stale`` within ``grace`` after, then ``lost``;
    ``unknown`` when its daemon never took one."""
    if host.lease_expires_at is None:
        return "unknown"
    if now <= host.lease_expires_at:
        return "up"
    return "stale" if now <= host.lease_expires_at + grace else "lost"


def _lease_left(host: "Host", now: float) -> float:
    """Seconds the lease of the host's daemon still runs (0: no live lease; stopped, lost or lapsed)."""
    if host.state != "up" or host.lease_expires_at is None:
        return 0.0
    return max(0.0, host.lease_expires_at - now)


def target_of(host: "Host") -> "SshTarget":
    """How to reach an enrolled host (InvalidInput for a host row without SSH reach)."""
    return target_of_pin(host.name, pin_of(host))


def target_of_pin(name: str, pin: "Pin") -> "SshTarget":
    """How to reach a host by its pin (InvalidInput for a host enrolled without SSH reach)."""
    from colibri.adapters.ssh_transport import SshTarget

    if not pin.user or not pin.address or not pin.host_keys:
        raise InvalidInput(f"host {name} has no SSH reach; enrol it with colibri hosts add {name} --ssh ...")
    return SshTarget(name, pin.user, pin.address, pin.port, pin.host_keys, pin.command)


def pin_of(host: "Host") -> "Pin":
    """The pin a row of the shared ``hosts`` table names."""
    from colibri.store.orchestrator import pin_of_row

    return pin_of_row(host.ssh_user, host.address, host.port, host.host_keys, host.command or DEFAULT_COMMAND)


def pin_divergence(name: str, pinned: "Pin | None", row: "Host | None") -> str | None:
    """Why the shared database's row of host ``name`` disagrees with this orchestrator's pin
    (None: it agrees).  A host can write that row (review R1): the record is the authority."""
    from colibri.store.orchestrator import differences

    if pinned is None:
        return f"host {name} is not enrolled on this orchestrator (its record holds no pin for it)"
    if row is None:
        return f"host {name} is enrolled here but its row is missing from the shared database"
    changed = differences(pinned, pin_of(row))
    if changed:
        return f"the shared database's {', '.join(changed)} of host {name} differ from this orchestrator's pin"
    return None
