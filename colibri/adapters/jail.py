"""The JailBackend interface, shared by the bastille (FreeBSD) and sandbox (Linux) backends.

A jail is named like its tenant.  Backends raise JailNotFound, JailExists or JailError
(BastilleError for bastille); every mutation is verified before it returns, since bastille's exit
status does not say whether it worked.
"""

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from colibri.adapters import jailfs
from colibri.adapters.runner import CommandResult
from colibri.errors import JailError


class JailState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    ABSENT = "absent"


@dataclass(frozen=True)
class JailInfo:
    name: str
    state: JailState
    root: Path
    ip: str | None = None
    managed: bool = False
    """True when colibri created the jail (its marker file is in the jail's directory)."""


UID_BLOCK = 65536
"""Host ids reserved for each tenant: a block of this many uids (and the same gids)."""
AGENT_ID = 1001
"""The agent user's id inside its tenant's block (and its uid inside a sandbox jail)."""


@dataclass(frozen=True)
class JailIds:
    """The block of host ids colibri allocated to one tenant (recorded in the store like its IP).

    The agent runs on the host as ``agent_uid``/``agent_gid`` on every backend: a bastille jail's
    agent user is created with that uid; a sandbox jail maps its ids 0..UID_BLOCK-1 (root included)
    onto ``base``..``base+UID_BLOCK-1`` in a user namespace, so its agent (uid AGENT_ID inside) is
    ``agent_uid`` outside.  No two tenants share a block; a block is never a host account's.
    """

    base: int

    @property
    def unprivileged(self) -> bool:
        """True when the whole block lies past the host's accounts (0..65535) and inside uid_t."""
        return UID_BLOCK <= self.base <= 2**32 - UID_BLOCK

    @property
    def agent_uid(self) -> int:
        return self.base + AGENT_ID

    @property
    def agent_gid(self) -> int:
        return self.base + AGENT_ID


@dataclass(frozen=True)
class Mount:
    host_path: Path
    jail_path: str
    read_only: bool = True


class JailBackend(Protocol):
    """What colibri needs from a jail manager."""

    name: str
    needs_ip: bool
    """True when each jail needs an address from ``jail_ip_pool`` (bastille: a jail's IP is its
    network; a sandbox jail has loopback only)."""
    live_mount_safe: bool
    """True when ``mount`` into a running jail resolves the mount point inside the jail (sandbox:
    setns, then move_mount); False when root in the jail could swap it for a symlink the host
    follows (bastille: mount.sh's ``mount -F fstab -a`` runs as host root): then an adoption
    stops a running jail for its mount, and jail(8) mounts it at the start."""

    def create(self, name: str, *, ip: str | None, template: str | None, ids: JailIds, tier: str = "paid") -> JailInfo:
        """Create (not start) a jail owned by colibri, its agent user on the tenant's ``ids``.
        JailExists if any jail of that name exists.  ``tier`` (issue 13, "paid"|"community"): what
        the jail may install from (bastille: the first-party pkg repository only for paid; the
        sandbox installs no packages)."""
        ...

    def interrupted(self, name: str) -> bool:
        """True when this backend's own ``create`` of ``name`` was cut short (kill -9 before the
        marker was written), so the unmarked jail there is colibri's half-made one, which
        ``create`` replaces, not a foreign jail.  A backend whose create cannot leave one says
        False."""
        ...

    def start(self, name: str) -> JailInfo: ...

    def stop(self, name: str) -> JailInfo: ...

    def restart(self, name: str) -> JailInfo: ...

    def destroy(self, name: str) -> None:
        """Stop and remove the jail.  Refuses a jail colibri did not create (JailError)."""
        ...

    def info(self, name: str) -> JailInfo:
        """The jail's state; state ABSENT when there is no such jail."""
        ...

    def list_jails(self) -> list[JailInfo]: ...

    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        user: str | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> CommandResult:
        """Run a command inside the running jail; exit status as the command's own."""
        ...

    def service_argv(self, service: str, verb: str) -> list[str]:
        """The command that runs ``service VERB`` inside this backend's jails (rc.d)."""
        ...

    def copy_in(self, name: str, source: Path, jail_path: str, *, mode: int = 0o644) -> None:
        """Copy a host file or directory tree into the jail (no symlink in the jail is followed)."""
        ...

    def mount(self, name: str, mount: Mount) -> None:
        """Mount a host directory into the jail (from its next start on, and now if running)."""
        ...

    def umount(self, name: str, jail_path: str) -> bool:
        """Undo ``mount``: the mount is gone now (if live) and from the next start on.  Returns
        False when there was none; raises JailError when it is still there afterwards."""
        ...

    def is_mounted(self, name: str, mount: Mount) -> bool:
        """True when ``mount`` is live in the running jail (the kernel's mount table, not a
        config line); False when it is not, or the jail is not running."""
        ...

    def processes(self, name: str) -> list[tuple[int, str]]:
        """(pid as the jail sees it, command line) of every process in the running jail, from the
        host's process table (never the jail's pidfiles or its own ps); [] when it does not run."""
        ...

    def enable_service(self, name: str, service: str, enabled: bool) -> bool:
        """Set rc.conf(5)'s ``SERVICE_enable`` in the jail (YES, or the line removed); returns
        True when that changed the file.  A backend without rc variables (sandbox) does nothing
        and returns False."""
        ...

    def root(self, name: str) -> Path:
        """The jail's root directory on the host."""
        ...

    def user_ids(self, name: str, user: str) -> tuple[int, int]:
        """The *host* uid/gid of ``user``, found in the jail's own /etc/passwd (never the host's)
        and translated through the jail's user namespace where it has one (sandbox)."""
        ...


def parse_passwd(text: str, user: str) -> tuple[int, int] | None:
    """Find ``user`` in passwd(5) text; None when absent.  Malformed lines are skipped."""
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == user:
            try:
                return int(fields[2]), int(fields[3])
            except ValueError:
                return None
    return None


PASSWD_LIMIT = 1 << 20
"""The largest jail /etc/passwd colibri reads (a real one is a few KiB)."""
MAX_ID = 2**32 - 1
"""uid_t and gid_t are 32 bits, and (uid_t)-1 is chown's "no change": a valid id is below it."""


def read_jail_passwd(root: Path, user: str) -> tuple[int, int]:
    """Find ``user`` in the jail's own ``etc/passwd``; raise JailError if it is missing or unsafe.

    The jail owns that file, so it is read with ``jailfs.read_regular``: no symlink followed, a
    regular file only (a FIFO planted there hung provisioning), at most PASSWD_LIMIT bytes.
    """
    try:
        data = jailfs.read_regular(root, "etc/passwd", PASSWD_LIMIT)
    except JailError as exc:
        raise JailError(f"unsafe or unreadable /etc/passwd in the jail: {exc}") from None
    ids = parse_passwd(data.decode("utf-8", errors="replace"), user)
    if ids is None:
        raise JailError(f"user {user} is missing from the jail's /etc/passwd ({root})")
    if not all(0 <= i < MAX_ID for i in ids):  # -1 would mean "leave as is" to chown, 2**40 overflows
        raise JailError(f"user {user} has an impossible uid/gid in the jail's /etc/passwd ({root}): refused")
    return ids


def env_list(mapping: Mapping[str, str] | None) -> list[str]:
    return [f"{k}={v}" for k, v in (mapping or {}).items()]
