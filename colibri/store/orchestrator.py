"""The orchestrator's own record: where each tenant lives and how each host is reached (review R1).

Every host of a hive has credentials to the shared database, so a compromised host can rewrite
``tenants.host`` and any row of ``hosts`` there.  The orchestrator (the host holding the vault
credentials) therefore keeps the AUTHORITATIVE copy of both in a root-only file of its own,
``<state_dir>/orchestrator.json`` (0600, written atomically: a temporary file, fsync, rename,
fsync of the directory; changes serialized by a lock file beside it):

    {"version": 1,
     "hosts":   {"osa": {"user": "colibri", "address": "192.0.2.10", "port": 22,
                         "host_keys": ["ssh-ed25519 AAAA..."], "command": "colibri"}},
     "tenants": {"acme": "osa"},          # each tenant placed from here (this host's too)
     "owed":    {"osa": ["beta"]}}        # a stale copy left there (move --old-host-lost)

Only ``hosts add|remove``, ``register-tenant --host``, ``move-tenant`` (and ``reconcile --apply``
settling what is owed) write it; before anything crosses to a host its placement and pin come
from here, and the shared rows must agree (placement.py).  A JSON file rather than a second
SQLite database: a small fleet's record is a few kB, the operator can read it (``jq``), back it
up with the state directory, and it needs no schema migrations.  A single-host colibri never
writes it.
"""

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colibri.errors import ConfigError, Conflict, StoreError
from colibri.poll import poll_true

FILE_NAME = "orchestrator.json"
MAX_BYTES = 16 << 20
LOCK_WAIT = 30.0
"""Seconds a change waits for another colibri command's change of the record."""


@dataclass(frozen=True)
class Pin:
    """How a host is reached, as enrolled here: the fields of adapters/ssh_transport.py's SshTarget
    (user and address None for a host enrolled without SSH reach)."""

    user: str | None
    address: str | None
    port: int
    host_keys: tuple[str, ...]
    command: str

    def public(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "address": self.address,
            "port": self.port,
            "host_keys": list(self.host_keys),
            "command": self.command,
        }


@dataclass
class Draft:
    """The record being changed (``OrchestratorRecord.change``): plain dictionaries."""

    this_host: str
    hosts: dict[str, Pin] = field(default_factory=dict)
    tenants: dict[str, str] = field(default_factory=dict)
    owed: dict[str, list[str]] = field(default_factory=dict)

    def host_of(self, tenant_id: str) -> str:
        """Where secrets of the tenant may go: the host it was placed on, else this host only."""
        return self.tenants.get(tenant_id, self.this_host)

    def placed(self, tenant_id: str) -> str | None:
        """The host this orchestrator placed the tenant on; None: it never placed it (a tenant
        of this host from before the record, or one registered by another host's own colibri)."""
        return self.tenants.get(tenant_id)

    def place(self, tenant_id: str, host: str) -> None:
        self.tenants[tenant_id] = host
        self.settle(host, tenant_id)  # living there again: nothing of it is owed a destroy there

    def forget(self, tenant_id: str) -> None:
        self.tenants.pop(tenant_id, None)

    def owe(self, host: str, tenant_id: str) -> None:
        owed = self.owed.setdefault(host, [])
        if tenant_id not in owed:
            owed.append(tenant_id)

    def settle(self, host: str, tenant_id: str) -> None:
        owed = self.owed.get(host)
        if owed and tenant_id in owed:
            owed.remove(tenant_id)
        if not self.owed.get(host, True):
            del self.owed[host]

    def placed_on(self, host: str) -> list[str]:
        return sorted(t for t, h in self.tenants.items() if h == host)

    def document(self) -> dict[str, Any]:
        return {
            "version": 1,
            "hosts": {name: pin.public() for name, pin in sorted(self.hosts.items())},
            "tenants": dict(sorted(self.tenants.items())),
            "owed": {host: sorted(ids) for host, ids in sorted(self.owed.items()) if ids},
        }


class OrchestratorRecord:
    """The record's file.  Reads are cached by the file's identity (one ``stat`` a read), so a
    batch of thousands of tenants reads it once."""

    def __init__(self, directory: Path, this_host: str) -> None:
        self.path = directory / FILE_NAME
        self.this_host = this_host
        self._cached: tuple[tuple[int, int, int], Draft] | None = None

    # ---- reads ----------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> Draft:
        """The record as it is now (empty when no file: a single host, or nothing enrolled yet).
        Read-only: the cached copy is shared by every read until the file changes; a change
        goes through ``change``."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            self._cached = None
            return Draft(self.this_host)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EMLINK):
                raise ConfigError(f"the orchestrator's record {self.path} is a symlink; refusing it") from None
            raise StoreError(f"cannot read the orchestrator's record {self.path}: {exc.strerror}") from None
        try:
            info = os.fstat(fd)
            self._check(info)
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
            raw = os.read(fd, MAX_BYTES + 1)
        finally:
            os.close(fd)
        if len(raw) > MAX_BYTES:
            raise ConfigError(f"the orchestrator's record {self.path} is larger than {MAX_BYTES} bytes")
        draft = self._parse(raw)
        self._cached = (key, draft)
        return draft

    def host_of(self, tenant_id: str) -> str:
        return self.read().host_of(tenant_id)

    def pin(self, host: str) -> Pin | None:
        return self.read().hosts.get(host)

    # ---- changes --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def change(self) -> Iterator[Draft]:
        """The record under its lock, written back (atomically) when the block ends without an
        error and changed it.  Conflict when another command holds the lock past LOCK_WAIT."""
        self._prepare_directory()
        lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            if not poll_true(lambda: _take(lock_fd), timeout=LOCK_WAIT, interval=0.02):
                raise Conflict(f"the orchestrator's record {self.path} is held by another colibri command; try again")
            before = self.read()
            draft = _copy(before)
            yield draft
            if draft != before:
                self._write(draft)
        finally:
            os.close(lock_fd)  # the flock goes with it

    # ---- the file -------------------------------------------------------------------------------
    def _check(self, info: os.stat_result) -> None:
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"the orchestrator's record {self.path} is not a regular file")
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise ConfigError(
                f"the orchestrator's record {self.path} must be owned by uid {os.geteuid()} and mode 0600 "
                f"(it is uid {info.st_uid}, mode {stat.S_IMODE(info.st_mode):04o}); it decides where secrets go"
            )

    def _prepare_directory(self) -> None:
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.path.parent}: {exc.strerror}") from None

    def _write(self, draft: Draft) -> None:
        data = (json.dumps(draft.document(), indent=1, ensure_ascii=True) + "\n").encode()
        temporary = self.path.with_name(f".{FILE_NAME}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise StoreError(f"cannot write the orchestrator's record {self.path}: {exc.strerror}") from None
        self._cached = None

    def _parse(self, raw: bytes) -> Draft:
        corrupt = ConfigError(
            f"the orchestrator's record {self.path} is not a record colibri wrote; restore it from a backup"
        )
        try:
            document = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise corrupt from None
        if not isinstance(document, dict) or document.get("version") != 1:
            raise corrupt
        hosts, tenants, owed = document.get("hosts", {}), document.get("tenants", {}), document.get("owed", {})
        if not (isinstance(hosts, dict) and isinstance(tenants, dict) and isinstance(owed, dict)):
            raise corrupt
        draft = Draft(self.this_host)
        for name, pin in hosts.items():
            draft.hosts[name] = _pin(pin, corrupt)
        for tenant, host in tenants.items():
            if not isinstance(host, str):
                raise corrupt
            draft.tenants[tenant] = host
        for host, ids in owed.items():
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise corrupt
            draft.owed[host] = list(ids)
        return draft


def _pin(value: object, corrupt: ConfigError) -> Pin:
    if not isinstance(value, dict):
        raise corrupt
    user, address, port, keys, command = (
        value.get("user"),
        value.get("address"),
        value.get("port"),
        value.get("host_keys"),
        value.get("command"),
    )
    texts_ok = all(v is None or isinstance(v, str) for v in (user, address)) and isinstance(command, str)
    keys_ok = isinstance(keys, list) and all(isinstance(k, str) for k in keys)
    if not texts_ok or not keys_ok or not isinstance(port, int) or isinstance(port, bool):
        raise corrupt
    assert isinstance(keys, list) and isinstance(command, str) and isinstance(port, int)
    return Pin(user, address, port, tuple(keys), command)


def _copy(draft: Draft) -> Draft:
    return Draft(
        draft.this_host,
        dict(draft.hosts),
        dict(draft.tenants),
        {host: list(ids) for host, ids in draft.owed.items()},
    )


def pin_of_row(user: str | None, address: str | None, port: int | None, keys: str | None, command: str) -> Pin:
    """The pin a ``hosts`` row of the shared database names (to compare with the record's)."""
    lines = tuple(line for line in (keys or "").splitlines() if line.strip())
    return Pin(user, address, port or 22, lines, command)


def differences(record: Pin, shared: Pin) -> list[str]:
    """The fields in which the shared database's row differs from the record's pin."""
    names = ("user", "address", "port", "host_keys", "command")
    return [n for n in names if getattr(record, n) != getattr(shared, n)]


def _take(fd: int) -> bool:
    """The record's lock, if no other command holds it now."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
