"""Per-jail cgroups: memory, pids and CPU limits, on cgroup v2 or v1.

v2 when the host's unified hierarchy (``/sys/fs/cgroup`` mounted cgroup2, or the hybrid
``/sys/fs/cgroup/unified``) offers the memory, pids and cpu controllers; else v1 when those three
controllers are mounted as ``/sys/fs/cgroup/{memory,pids,cpu}``; else JailError naming what is
missing.  Each jail's group is ``colibri/<group>`` under each hierarchy; every limit is read back
after it is written.
"""

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from colibri.errors import JailError
from colibri.poll import poll_true

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class Limits:
    memory_mib: int
    max_processes: int
    cpu_percent: int


@dataclass(frozen=True)
class Hierarchy:
    version: int
    groups: tuple[Path, ...]
    """The jail's group directories (v2: one; v1: one per controller)."""

    def procs(self) -> list[str]:
        return [str(group / "cgroup.procs") for group in self.groups]


def _unified(root: Path) -> Path | None:
    for candidate in (root, root / "unified"):
        try:
            available = (candidate / "cgroup.controllers").read_text().split()
        except OSError:
            continue
        if all(c in available for c in CONTROLLERS):
            return candidate
    return None


def hierarchy(group: str, root: Path = CGROUP_ROOT) -> Hierarchy:
    """Where ``group``'s cgroups live on this host (JailError if the host lacks the controllers)."""
    unified = _unified(root)
    if unified is not None:
        return Hierarchy(2, (unified / "colibri" / group,))
    missing = [c for c in CONTROLLERS if not (root / c / "cgroup.procs").is_file()]
    if missing:
        raise JailError(
            "the sandbox backend needs the cgroup memory, pids and cpu controllers (v2, or v1 at "
            f"{root}/<controller>); missing: {', '.join(missing)}"
        )
    return Hierarchy(1, tuple(root / c / "colibri" / group for c in CONTROLLERS))


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value + "\n")
    except OSError as exc:
        raise JailError(f"cannot set {path} to {value}: {exc.strerror}") from None


def _expect(path: Path, wanted: str) -> None:
    try:
        actual = path.read_text().strip()
    except OSError as exc:
        raise JailError(f"cannot read back {path}: {exc.strerror}") from None
    if actual != wanted:
        raise JailError(f"cgroup limit {path} is {actual!r} after writing {wanted!r}")


def create(h: Hierarchy, limits: Limits) -> None:
    """Make the jail's groups and set and verify its limits (idempotent)."""
    memory = limits.memory_mib * 1024 * 1024
    quota = CPU_PERIOD_US * limits.cpu_percent // 100
    try:
        for group in h.groups:
            group.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as exc:
        raise JailError(f"cannot create the jail's cgroup: {exc.strerror}") from None
    if h.version == 2:
        group = h.groups[0]
        for parent in (group.parent.parent, group.parent):
            enabled = (parent / "cgroup.subtree_control").read_text().split()
            missing = [f"+{c}" for c in CONTROLLERS if c not in enabled]
            if missing:
                _write(parent / "cgroup.subtree_control", " ".join(missing))
        _write(group / "memory.max", str(memory))
        if (group / "memory.swap.max").exists():
            _write(group / "memory.swap.max", "0")
        _write(group / "pids.max", str(limits.max_processes))
        _write(group / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        _expect(group / "memory.max", str(memory))
        _expect(group / "pids.max", str(limits.max_processes))
        _expect(group / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        return
    mem, pids, cpu = h.groups
    memsw = mem / "memory.memsw.limit_in_bytes"
    if memsw.exists():  # the kernel keeps memsw >= the limit: lift it first, so a higher limit fits
        _write(memsw, "-1")
    _write(mem / "memory.limit_in_bytes", str(memory))
    if memsw.exists():  # swap accounting on: no swap beyond the limit
        _write(memsw, str(memory))
    _write(pids / "pids.max", str(limits.max_processes))
    _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
    _write(cpu / "cpu.cfs_quota_us", str(quota))
    _expect(mem / "memory.limit_in_bytes", str(memory))
    _expect(pids / "pids.max", str(limits.max_processes))
    _expect(cpu / "cpu.cfs_quota_us", str(quota))


def remove(h: Hierarchy, timeout: float = 5.0) -> None:
    """Remove the jail's groups once their processes are gone (JailError if they stay busy)."""
    deadline = time.monotonic() + timeout
    for group in h.groups:
        why: list[str] = []

        def removed(group: Path = group, why: list[str] = why) -> bool:
            try:
                group.rmdir()
            except FileNotFoundError:
                return True
            except OSError as exc:
                why[:] = [exc.strerror or str(exc)]
                _kill_all(group)
                return False
            return True

        if group.is_dir() and not poll_true(removed, timeout=deadline - time.monotonic(), interval=0.02):
            raise JailError(f"cannot remove the jail's cgroup {group}: {why[0] if why else 'busy'}")


def _kill_all(group: Path) -> None:
    kill = group / "cgroup.kill"  # cgroup v2 (Linux 5.14+): the kernel kills all, forks included
    if kill.exists():
        with contextlib.suppress(OSError):
            kill.write_text("1\n")
    with contextlib.suppress(OSError):
        for pid in (group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), 9)


def kill(h: Hierarchy, timeout: float = 5.0) -> None:
    """SIGKILL every process left in the jail's groups, whatever it claims to be, until they are
    empty (JailError if they are not within ``timeout``).  Nothing but the jail runs in them."""
    deadline = time.monotonic() + timeout
    for group in h.groups:

        def empty(group: Path = group) -> bool:
            if not _procs(group):
                return True
            _kill_all(group)
            return False

        if not poll_true(empty, timeout=deadline - time.monotonic(), interval=0.01):
            raise JailError(f"the jail's processes in {group} survive SIGKILL")


def _procs(group: Path) -> list[str]:
    try:
        return (group / "cgroup.procs").read_text().split()
    except OSError:
        return []


def pids(h: Hierarchy) -> list[int]:
    """The processes in the jail's (first) group."""
    try:
        return [int(p) for p in (h.groups[0] / "cgroup.procs").read_text().split()]
    except OSError:
        return []
