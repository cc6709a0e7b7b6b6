"""``colibri hosts``: enrol a host (its SSH reach and pinned host keys), list and show hosts with
their liveness, check one over SSH, remove one.

Enrolment never connects: the host key comes out of band (the host's console, its installer's
output), so there is no first use to trust.  ``check`` is the first connection, made with the pin.
"""

import ipaddress
import os
import re
import stat
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colibri import __version__
from colibri.domain import JAIL_NAME, validate_host_name
from colibri.errors import ColibriError, Conflict, HostIncompatible, HostNotFound, InvalidInput
from colibri.store.db import Store
from colibri.text import safe

if TYPE_CHECKING:
    from colibri.adapters.ssh import SshHosts
    from colibri.adapters.ssh_transport import SshTarget
    from colibri.store.models import Host

HOST_NAME_MAX = 63
LEASE_GRACE = 30.0
"""Seconds past a host's lease before it is ``lost`` (between, it is ``stale``)."""
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


def target_of(host: "Host") -> "SshTarget":
    """How to reach an enrolled host (InvalidInput for a host row without SSH reach)."""
    from colibri.adapters.ssh_transport import SshTarget

    if not host.ssh_user or not host.address or not host.host_keys:
        raise InvalidInput(f"host {host.name} has no SSH reach; enrol it with colibri hosts add {host.name} --ssh ...")
    return SshTarget(
        name=host.name,
        user=host.ssh_user,
        address=host.address,
        port=host.port or 22,
        host_keys=tuple(host.host_keys.splitlines()),
        command=host.command or DEFAULT_COMMAND,
    )


def _major(version: str) -> str:
    return version.split(".", 1)[0]


@dataclass(frozen=True)
class CheckReport:
    host: dict[str, Any]
    error: ColibriError | None


class HostService:
    def __init__(
        self,
        store: Store,
        ssh: "Callable[[], SshHosts] | None" = None,
        clock: Callable[[], float] = time.time,
        grace: float = LEASE_GRACE,
    ) -> None:
        self._store = store
        self._ssh = ssh
        self._clock = clock
        self._grace = grace

    def add(
        self, name: str, ssh: str, host_keys: Sequence[str], command: str | None, known_hosts: Path | None = None
    ) -> dict[str, Any]:
        """Enrol a host (no connection): its SSH reach, the host keys to pin (``host_keys`` lines,
        and those of ``known_hosts`` for its address), the remote colibri.  The same fields again:
        no-op; other fields: Conflict."""
        from colibri.adapters.ssh_keys import keys_from_known_hosts, normal_key_line
        from colibri.store.audit_hooks import record
        from colibri.store.hosts import HostRepo
        from colibri.store.models import Host

        validate_host_id(name)
        user, address, port = parse_ssh(ssh)
        host_keys = list(host_keys)
        if known_hosts is not None:
            from_file = keys_from_known_hosts(_read_text(known_hosts), address, port)
            if not from_file:
                raise InvalidInput(f"--known-hosts {known_hosts}: no key for {address} (port {port}) in it")
            host_keys += from_file
        if not host_keys:
            raise InvalidInput(
                f"no host key for host {name}: give --host-key 'ssh-ed25519 AAAA...' or --known-hosts FILE"
            )
        if len(host_keys) > 16:
            raise InvalidInput(f"{len(host_keys)} host keys for host {name}; at most 16")
        keys = "\n".join(dict.fromkeys(normal_key_line(line) for line in host_keys))
        remote = validate_command(command)
        with self._store.session() as session:
            repo = HostRepo(session)
            found = repo.get(name, for_update=True)
            if found is not None:
                same = (found.ssh_user, found.address, found.port, found.host_keys, found.command)
                if same == (user, address, port, keys, remote):
                    return self._view(found, repo)
                raise Conflict(f"host {name} is enrolled with other fields; colibri hosts remove {name} first")
            host = Host(name=name, ssh_user=user, address=address, port=port, host_keys=keys, command=remote)
            repo.add(host)
            record(
                session, "host.add", f"host:{name}", ssh=f"{user}@{address}:{port}", host_keys=len(keys.split()) // 2
            )
            return self._view(host, repo)

    def list(self) -> list[dict[str, Any]]:
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            repo = HostRepo(session)
            return [self._view(host, repo) for host in repo.find()]

    def show(self, name: str) -> dict[str, Any]:
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            repo = HostRepo(session)
            return self._view(self._get(repo, name), repo)

    def remove(self, name: str) -> dict[str, Any]:
        from colibri.store.audit_hooks import record
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            repo = HostRepo(session)
            host = self._get(repo, name, for_update=True)
            view = self._view(host, repo)
            if view["tenants"]:
                raise Conflict(
                    f"host {name} still has {view['tenants']} tenant(s); move or remove them first "
                    "(colibri list-tenants shows their host)"
                )
            repo.remove(host)
            record(session, "host.remove", f"host:{name}")
            return view

    def check(self, name: str) -> CheckReport:
        """Connect with the pinned key, run the remote ``colibri version --json``, record what it
        found (version, backend, checked_at, last_error).  The error (another major version:
        HostIncompatible; the backend's programs missing: HostIncompatible; SSH: RemoteError,
        HostKeyRefused, CommandTimeout) is recorded, and returned with the host's view."""
        from colibri.store.audit_hooks import record
        from colibri.store.hosts import HostRepo

        with self._store.session() as session:
            target = target_of(self._get(HostRepo(session), name))
        assert self._ssh is not None, "HostService.check needs the SSH adapter"
        found: dict[str, Any] = {}
        error: ColibriError | None = None
        try:
            found = self._ssh().run_json(target, ["version", "--json"])
            error = self._judge(name, found)
        except ColibriError as exc:
            error = exc
        with self._store.session() as session:
            repo = HostRepo(session)
            host = self._get(repo, name, for_update=True)
            if found:
                host.version = str(found.get("version"))[:32]
                host.backend = str(found.get("backend"))[:16] if found.get("backend") else None
            host.last_error = error.message[:2000] if error is not None else None
            host.checked_at = host.updated_at = datetime.now(UTC).replace(microsecond=0)
            session.add(host)
            session.flush()
            record(session, "host.check", f"host:{name}", outcome="ok" if error is None else "failed",
                   version=host.version, backend=host.backend, error=host.last_error)  # fmt: skip
            view = self._view(host, repo)
        view["found"] = _found_view(found)
        return CheckReport(view, error)

    @staticmethod
    def _judge(name: str, found: dict[str, Any]) -> ColibriError | None:
        version = found.get("version")
        if not isinstance(version, str) or not version:
            return HostIncompatible(f"host {name}: the remote colibri did not say its version")
        if _major(version) != _major(__version__):
            return HostIncompatible(
                f"host {name} runs colibri {version[:32]}, another major version than this one's {__version__}; "
                "upgrade one of them"
            )
        if found.get("settings_error"):
            return HostIncompatible(f"host {name}: the remote colibri's settings are invalid")
        calls_itself = found.get("host")
        if calls_itself != name:  # enrolled crosswise, or a copied colibri.toml: its tenants' secrets would go astray
            return HostIncompatible(
                f"host {name}: the colibri there calls itself {safe(str(calls_itself)[:64])!r} (its setting host); "
                f"make it {name!r} there, or enrol it under its own name"
            )
        if found.get("backend_ready") is not True:
            missing = found.get("missing")
            names = ", ".join(str(m)[:64] for m in missing) if isinstance(missing, list) else "?"
            return HostIncompatible(
                f"host {name}: its {str(found.get('backend'))[:16]} backend's programs are missing there: {names}"
            )
        return None

    def _get(self, repo: Any, name: str, for_update: bool = False) -> "Host":
        host: Host | None = repo.get(name, for_update=for_update)
        if host is None:
            raise HostNotFound(name)
        return host

    def _view(self, host: "Host", repo: Any) -> dict[str, Any]:
        from colibri.adapters.ssh_keys import fingerprint

        keys = host.host_keys.splitlines() if host.host_keys else []
        port = host.port or 22
        ssh = None
        if host.ssh_user and host.address:
            address = f"[{host.address}]" if ":" in host.address else host.address
            ssh = f"{host.ssh_user}@{address}" + ("" if port == 22 else f":{port}")
        return {
            "name": host.name,
            "ssh": ssh,
            "host_keys": [{"type": line.split()[0], "fingerprint": fingerprint(line)} for line in keys],
            "command": host.command or DEFAULT_COMMAND,
            "liveness": liveness(host, self._clock(), self._grace),
            "state": host.state,
            "lease_expires_at": host.lease_expires_at,
            "backend": host.backend,
            "version": host.version,
            "tenants": repo.tenant_count(host.name),
            "last_error": host.last_error,
            "enrolled_at": host.enrolled_at.isoformat() if host.enrolled_at else None,
            "checked_at": host.checked_at.isoformat() if host.checked_at else None,
        }


def _read_text(path: Path, limit: int = 1 << 20) -> str:
    """A small regular text file (--known-hosts), refused with InvalidInput otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(f"cannot read --known-hosts {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InvalidInput(f"--known-hosts {path} is not a regular file")
        raw = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(raw) > limit:
        raise InvalidInput(f"--known-hosts {path} is larger than {limit} bytes")
    return raw.decode("utf-8", "replace")


def _found_view(found: dict[str, Any]) -> dict[str, Any]:
    """What the remote said, bounded (it is the remote's text: the CLI shows it through safe())."""
    programs = found.get("programs")
    return {
        "version": str(found.get("version"))[:32] if found.get("version") is not None else None,
        "python": str(found.get("python"))[:32] if found.get("python") is not None else None,
        "backend": str(found.get("backend"))[:16] if found.get("backend") is not None else None,
        "backend_ready": found.get("backend_ready") is True,
        "programs": {str(k)[:64]: (str(v)[:256] if v else None) for k, v in list(programs.items())[:8]}
        if isinstance(programs, dict)
        else {},
    }
