"""Where the lifecycle puts things (in a jail, on the host), and the one lock per tenant."""

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from colibri.adapters.jail import Mount
from colibri.adapters.locks import host_lock

MOTHER = "colibri_mother"
"""The mother skill's rc.d service name in every agent jail."""
SKILL_DIR = "/usr/local/share/colibri/skills/mother"
HANDLERS_DIR = "/usr/local/libexec/colibri/handlers"
IDENTITY = "/usr/local/etc/colibri/agent.json"
JAIL_SOCKET_DIR = "/var/run/colibri"
"""Where the tenant's socket directory (``run_dir/agents/<tenant>``) is mounted in its jail."""


@dataclass(frozen=True)
class SpawnPaths:
    run_dir: Path
    skills_dir: Path
    jail_user: str
    ip_pool: str
    default_template: str
    uid_base: int = 1_000_000_000
    uid_blocks: int = 16_384
    state_dir: Path | None = None
    """Where adoption records live (``state_dir/adopted/``); default: beside ``run_dir``."""

    @property
    def records(self) -> Path:
        return self.state_dir if self.state_dir is not None else self.run_dir

    @property
    def locks(self) -> Path:
        return self.run_dir / "locks"

    def socket_dir(self, tenant_id: str) -> Path:
        return self.run_dir / "agents" / tenant_id

    def socket_mount(self, tenant_id: str) -> Mount:
        return Mount(self.socket_dir(tenant_id), JAIL_SOCKET_DIR, read_only=False)


@contextlib.contextmanager
def agent_lock(locks_dir: Path, tenant_id: str) -> Iterator[None]:
    """The tenant's lifecycle lock: held by spawn, start, stop, destroy, release, remove and every
    reconcile repair of that tenant, never waited for (a second one is refused, StateConflict).
    Its file name is kept from earlier releases (``spawn-<tenant>``), so a colibri being upgraded
    and the new one exclude each other."""
    with host_lock(locks_dir, f"spawn-{tenant_id}", wait=None):
        yield


def make_socket_dir(socket_dir: Path, agent_gid: int) -> None:
    """``run_dir/agents/<tenant>``, root:<the tenant's agent gid> 0750, so of all host users only
    that tenant's agent reaches its socket; ``agents/`` is 0711 (no listing).  The tenant's own
    directory is what gets mounted into its jail.  Its owner is colibri's own user: root, as
    colibri runs on a host (a unit test's user otherwise)."""
    socket_dir.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    socket_dir.parent.chmod(0o711)
    socket_dir.mkdir(exist_ok=True, mode=0o750)
    fd = os.open(socket_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fchown(fd, os.geteuid(), agent_gid)
        os.fchmod(fd, 0o750)
    finally:
        os.close(fd)


def uid_pool_lock(locks_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Held while a block of host ids is given out or claimed (allocation, adoption)."""
    return host_lock(locks_dir, "uid-pool")


def ip_pool_lock(locks_dir: Path) -> contextlib.AbstractContextManager[None]:
    """Held while a jail IP is given out from ``jail_ip_pool``."""
    return host_lock(locks_dir, "ip-pool")


def local_home_record(records: Path, tenant_id: str) -> Path:
    """Where spawn-local records the home it checked for a tenant (``state_dir/homes/<tenant>``,
    root-only): the one place this host writes that tenant's .env, whatever the shared row says."""
    return records / "homes" / tenant_id


def record_local_home(records: Path, tenant_id: str, home: Path) -> None:
    """Record ``home`` for the tenant, atomically (0600 in a 0700 directory)."""
    folder = records / "homes"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = local_home_record(records, tenant_id)
    temporary = folder / f".{tenant_id}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, str(home).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, target)


def recorded_local_home(records: Path, tenant_id: str) -> Path | None:
    """The home spawn-local recorded for the tenant, or None."""
    try:
        fd = os.open(local_home_record(records, tenant_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4097)
    finally:
        os.close(fd)
    text = raw.decode("utf-8", "replace")
    return Path(text) if text.startswith("/") and len(raw) <= 4096 else None
