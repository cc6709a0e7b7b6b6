"""``colibri hosts``: enrol a host (its SSH reach and pinned host keys), list and show hosts with
their liveness, check one over SSH, remove one.

Enrolment never connects: the host key comes out of band (the host's console, its installer's
output), so there is no first use to trust.  ``check`` is the first connection, made with the pin.
"""

import contextlib
import math
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colibri import __version__
from colibri.errors import ColibriError, Conflict, HostIncompatible, HostNotFound, InvalidInput
from colibri.services.hosts.reach import (
    CLOCK_READ_SECONDS,
    DEFAULT_COMMAND,
    LEASE_GRACE,
    _lease_left,
    liveness,
    parse_ssh,
    pin_divergence,
    pin_of,
    target_of,
    target_of_pin,
    validate_command,
    validate_host_id,
)
from colibri.store.db import Store
from colibri.text import safe

if TYPE_CHECKING:
    from colibri.adapters.ssh import SshHosts
    from colibri.store.models import Host
    from colibri.store.orchestrator import Draft, OrchestratorRecord


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
        clock: Callable[[], float] | None = None,
        grace: float = LEASE_GRACE,
        record: "OrchestratorRecord | None" = None,
        settle: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._store = store
        self._ssh = ssh
        self._clock = clock
        self._grace = grace
        self._record = record  # the orchestrator's own pins and placement (store/orchestrator.py)
        self._settle = settle  # destroys the stale copies owed on a host that answers (review R15)

    def _now(self) -> float:
        """Now on the database's clock, the one the daemons write their leases by (review R3): a
        host is judged up or gone the same from every host, whatever this one's clock says."""
        if self._clock is not None:
            return self._clock()
        self._store.sync_clock(CLOCK_READ_SECONDS)
        return self._store.clock()

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
        with self._changing() as draft, self._store.session() as session:
            repo = HostRepo(session)
            found = repo.get(name, for_update=True)
            host = Host(name=name, ssh_user=user, address=address, port=port, host_keys=keys, command=remote)
            pinned = None if draft is None else draft.hosts.get(name)
            if pinned is not None and pinned != pin_of(host):
                raise Conflict(f"host {name} is enrolled with other fields here; colibri hosts remove {name} first")
            if found is not None:
                same = (found.ssh_user, found.address, found.port, found.host_keys, found.command)
                if same != (user, address, port, keys, remote):
                    raise Conflict(f"host {name} is enrolled with other fields; colibri hosts remove {name} first")
                host = found
            else:
                repo.add(host)
                ssh_reach, key_count = f"{user}@{address}:{port}", len(keys.split()) // 2
                record(session, "host.add", f"host:{name}", ssh=ssh_reach, host_keys=key_count)
            if draft is not None:  # the same fields again pin a host enrolled before the record existed
                draft.hosts[name] = pin_of(host)
            return self._view(host, repo, draft)

    def list(self) -> list[dict[str, Any]]:
        from colibri.store.hosts import HostRepo

        draft = self._record.read() if self._record is not None else None
        with self._store.session() as session:
            repo = HostRepo(session)
            return [self._view(host, repo, draft) for host in repo.find()]

    def show(self, name: str) -> dict[str, Any]:
        from colibri.store.hosts import HostRepo

        draft = self._record.read() if self._record is not None else None
        with self._store.session() as session:
            repo = HostRepo(session)
            return self._view(self._get(repo, name), repo, draft)

    def remove(self, name: str) -> dict[str, Any]:
        from colibri.store.audit_hooks import record
        from colibri.store.hosts import HostRepo

        with self._changing() as draft, self._store.session() as session:
            repo = HostRepo(session)
            repo.hold(name, exclusive=True)  # before the count: no tenant is placed there meanwhile (R9)
            host = self._get(repo, name, for_update=True)
            view = self._view(host, repo, draft)
            placed = draft.placed_on(name) if draft is not None else []  # the shared count may be forged
            if view["tenants"] or placed:
                raise Conflict(
                    f"host {name} still has {max(view['tenants'], len(placed))} tenant(s); move or remove them "
                    "first (colibri list-tenants shows their host)"
                )
            left = _lease_left(host, self._now())
            if left > 0:  # its daemon would run on without a row (review R13)
                raise Conflict(
                    f"host {name}'s daemon holds a live lease ({math.ceil(left)} s left): stop it first "
                    f"(service colibri stop, on {name}); if it is gone, wait {math.ceil(left)} s"
                )
            repo.remove(host)
            record(session, "host.remove", f"host:{name}")
            if draft is not None:
                draft.hosts.pop(name, None)
                view["stale_copies_forgotten"] = draft.owed.pop(name, [])
            return view

    def check(self, name: str) -> CheckReport:
        """Connect with the pinned key, run the remote ``colibri version --json``, record what it
        found (version, backend, checked_at, last_error).  The error (another major version:
        HostIncompatible; the backend's programs missing: HostIncompatible; SSH: RemoteError,
        HostKeyRefused, CommandTimeout) is recorded, and returned with the host's view."""
        from colibri.errors import HostKeyRefused
        from colibri.store.audit_hooks import record
        from colibri.store.hosts import HostRepo

        diverged: str | None = None
        with self._store.session() as session:
            row = self._get(HostRepo(session), name)
            if self._record is None:
                target = target_of(row)
            else:  # the orchestrator's own pin, whatever the shared row says (review R1)
                pinned = self._record.pin(name)
                diverged = pin_divergence(name, pinned, row)
                if pinned is None:
                    raise HostKeyRefused(f"{diverged}; enrol it: colibri hosts add {name} --ssh ... --host-key ...")
                target = target_of_pin(name, pinned)
        assert self._ssh is not None, "HostService.check needs the SSH adapter"
        found: dict[str, Any] = {}
        error: ColibriError | None = None
        settled: list[str] = []
        try:
            found = self._ssh().run_json(target, ["version", "--json"])
            error = self._judge(name, found)
            if error is None and diverged is None and self._settle is not None:
                settled = self._settle(name)  # it answers as itself: the stale copies owed there go
        except ColibriError as exc:
            error = exc
        if diverged is not None:  # reported first: the shared row was changed behind the orchestrator
            error = HostKeyRefused(
                f"{diverged}: nothing is sent to it until they agree (colibri reconcile --apply restores the pin)"
            )
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
            view = self._view(host, repo, self._record.read() if self._record is not None else None)
        view["found"] = _found_view(found)
        if self._settle is not None:
            view["stale_copies_destroyed"] = settled
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

    @contextlib.contextmanager
    def _changing(self) -> "Iterator[Draft | None]":
        """The orchestrator's record under its lock (None without one: a test's bare service)."""
        if self._record is None:
            yield None
            return
        with self._record.change() as draft:
            yield draft

    def _view(self, host: "Host", repo: Any, draft: "Draft | None" = None) -> dict[str, Any]:
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
            "liveness": liveness(host, self._now(), self._grace),
            "state": host.state,
            "lease_expires_at": host.lease_expires_at,
            "backend": host.backend,
            "version": host.version,
            "tenants": repo.tenant_count(host.name),
            "last_error": host.last_error,
            "enrolled_at": host.enrolled_at.isoformat() if host.enrolled_at else None,
            "checked_at": host.checked_at.isoformat() if host.checked_at else None,
            **(self._pin_view(host, draft) if draft is not None else {}),
        }

    @staticmethod
    def _pin_view(host: "Host", draft: "Draft") -> dict[str, Any]:
        """What this orchestrator's record says of the host: is it pinned here, does the shared
        row agree, the stale copies owed a destroy there."""
        if host.name == draft.this_host and host.name not in draft.hosts:
            return {"pinned": False, "diverged": None, "stale_copies": []}  # the orchestrator's own row
        diverged = pin_divergence(host.name, draft.hosts.get(host.name), host)
        return {"pinned": host.name in draft.hosts, "diverged": diverged, "stale_copies": draft.owed.get(host.name, [])}


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
