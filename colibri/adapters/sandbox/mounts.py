"""The sandbox's bind mounts: recorded beside the jail's root (``mounts.json``, applied by
bubblewrap at every start), bound into or detached from a running jail's mount namespace now,
and checked live in its init's mountinfo (proc(5)), never taken from the config alone.

``SandboxMounts`` is a part of ``Sandbox`` (colibri/adapters/sandbox/backend.py), which gives
it the jail's directory, its init's pid and the runner.
"""

import json
import os
import sys
from pathlib import Path
from typing import Any

from colibri.adapters import jailfs
from colibri.adapters.jail import Mount
from colibri.adapters.runner import CommandRunner
from colibri.errors import JailError

_DETACH = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(f"/proc/{int(sys.argv[1])}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
if libc.setns(fd, 0x00020000) != 0:  # CLONE_NEWNS: root and cwd become the namespace's
    sys.exit("setns: " + os.strerror(ctypes.get_errno()))
if libc.umount2(sys.argv[2].encode(), 2 | 8) != 0:  # MNT_DETACH | UMOUNT_NOFOLLOW
    sys.exit("umount2: " + os.strerror(ctypes.get_errno()))
"""
"""Run as host root in a child: detach one bind in a running jail's mount namespace (the jail
itself cannot: its seccomp filter refuses umount)."""
_ATTACH = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
pid, source, target, read_only = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] == "1"
def fail(what):
    sys.exit(what + ": " + os.strerror(ctypes.get_errno()))
# open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE): a detached bind
tree = libc.syscall(428, -100, source.encode(), 1 | 0o2000000 | 0x8000)
if tree < 0:
    fail("open_tree")
if read_only:
    class Attr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "prop", "ns")]
    attr = Attr(1, 0, 0, 0)  # MOUNT_ATTR_RDONLY, with AT_EMPTY_PATH | AT_RECURSIVE
    if libc.syscall(442, tree, b"", 0x1000 | 0x8000, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        fail("mount_setattr")
fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
if libc.setns(fd, 0x00020000) != 0:
    fail("setns")
if libc.syscall(429, tree, b"", -100, target.encode(), 4) != 0:  # move_mount, MOVE_MOUNT_F_EMPTY_PATH
    fail("move_mount")
"""
"""Run as host root in a child: bind a host directory into a running jail's mount namespace now
(what bubblewrap does at the jail's next start)."""


class SandboxMounts:
    """JailBackend's mount, umount and is_mounted for the sandbox."""

    _dir: Path
    _run: CommandRunner

    def root(self, name: str) -> Path:
        raise NotImplementedError

    def _require(self, name: str) -> None:
        raise NotImplementedError

    def _init_pid(self, name: str) -> int | None:
        raise NotImplementedError

    def _root_owner(self, name: str) -> tuple[int, int] | None:
        raise NotImplementedError

    def mount(self, name: str, mount: Mount) -> None:
        """Record a bind mount (in ``mounts.json`` beside the root), which bubblewrap applies at
        every start; in a running jail it is bound now as well, and checked live."""
        self._require(name)
        entry = {"host_path": str(mount.host_path), "jail_path": mount.jail_path, "read_only": mount.read_only}
        mounts = self._mount_entries(name)
        if entry in mounts and (self._init_pid(name) is None or self.is_mounted(name, mount)):
            return
        mounts = [m for m in mounts if m != entry]
        if not mount.host_path.is_dir() or mount.host_path.is_symlink():
            raise JailError(f"cannot mount {mount.host_path}: not a directory")
        with jailfs.open_dir(self.root(name), mount.jail_path, create=True, owner=self._root_owner(name)):
            pass
        path = self._dir / name / "mounts.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([*mounts, entry], indent=2) + "\n")
        tmp.replace(path)
        init = self._init_pid(name)
        if init is not None and not self.is_mounted(name, mount):  # running: live now, and checked
            argv = [sys.executable, "-I", "-S", "-c", _ATTACH, str(init), str(mount.host_path), mount.jail_path]
            result = self._run([*argv, "1" if mount.read_only else "0"], timeout=30, ok_codes=(0, 1))
            if not self.is_mounted(name, mount):
                tmp.write_text(json.dumps(mounts, indent=2) + "\n")
                tmp.replace(path)
                raise JailError(
                    f"cannot mount {mount.host_path} on {mount.jail_path} in sandbox jail {name}: "
                    f"{result.err.strip()[-200:] or 'not mounted afterwards'}"
                )

    def umount(self, name: str, jail_path: str) -> bool:
        """Drop the bind from ``mounts.json`` (gone from the next start on) and, in a running jail,
        detach it now in the jail's mount namespace wherever it is: found by its source (device
        and directory, mountinfo), not its mount point, which root in the jail can rename away
        (``mv /var/run /var/run.old``).  Verified afterwards: no copy of it is left."""
        self._require(name)
        mounts = self._mount_entries(name)
        kept = [m for m in mounts if m.get("jail_path") != jail_path]
        found = [_host_source(Path(m["host_path"])) for m in mounts if m.get("jail_path") == jail_path]
        sources = {s for s in (*found, self._live_mount(name, jail_path)) if s is not None}
        points = self._points_of(name, sources)
        if kept == mounts and not points:
            return False
        if kept != mounts:
            path = self._dir / name / "mounts.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(kept, indent=2) + "\n")
            tmp.replace(path)
        init = self._init_pid(name)
        errors = []
        for point in reversed(points) if init is not None else ():  # the last stacked first
            argv = [sys.executable, "-I", "-S", "-c", _DETACH, str(init), point]
            errors.append(self._run(argv, timeout=30, ok_codes=(0, 1)).err.strip()[-200:])
        left = self._points_of(name, sources)
        if left:
            said = next((e for e in errors if e), "still mounted")
            raise JailError(f"cannot unmount {jail_path} in sandbox jail {name} (on {', '.join(left)}): {said}")
        return True

    def _points_of(self, name: str, sources: set[tuple[str, str]]) -> list[str]:
        """Every mount point in the running jail that is a bind of one of ``sources``."""
        init = self._init_pid(name)
        if init is None or not sources:
            return []
        return [p for d, r, p in _mountinfo(Path(f"/proc/{init}/mountinfo")) if (d, r) in sources]

    def is_mounted(self, name: str, mount: Mount) -> bool:
        """The jail's mount on ``jail_path`` is a bind of ``host_path``: the same device, and the
        same directory of that file system (mountinfo's root field) as the host sees it."""
        live = self._live_mount(name, mount.jail_path)
        return live is not None and live == _host_source(mount.host_path)

    def _live_mount(self, name: str, jail_path: str) -> tuple[str, str] | None:
        """(device, directory of its file system) of the mount on ``jail_path`` in the running
        jail, from its init's mountinfo (proc(5): mount points relative to that process's root)."""
        init = self._init_pid(name)
        if init is None:
            return None
        found = None
        for device, fs_root, point in _mountinfo(Path(f"/proc/{init}/mountinfo")):
            if point == "/" + jail_path.strip("/"):
                found = (device, fs_root)  # the last one stacked there is what is seen
        return found

    def _mount_entries(self, name: str) -> list[dict[str, Any]]:
        try:
            entries: list[dict[str, Any]] = json.loads((self._dir / name / "mounts.json").read_text())
        except (OSError, ValueError):
            return []
        return entries

    def _mounts(self, name: str) -> list[Mount]:
        return [Mount(Path(m["host_path"]), m["jail_path"], bool(m["read_only"])) for m in self._mount_entries(name)]


def _mountinfo(path: Path) -> list[tuple[str, str, str]]:
    """(major:minor, root within the file system, mount point) of each line of a mountinfo."""
    try:
        text = path.read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 4:
            rows.append((fields[2], _unescape(fields[3]), _unescape(fields[4])))
    return rows


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _host_source(host_path: Path) -> tuple[str, str] | None:
    """What a bind of ``host_path`` shows in a mountinfo: the device of the host mount holding
    it, and its path inside that file system."""
    try:
        path = host_path.resolve(strict=True)
    except OSError:
        return None
    best: tuple[str, str, str] | None = None
    for device, fs_root, point in _mountinfo(Path("/proc/self/mountinfo")):
        inside = point == "/" or str(path) == point or str(path).startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best[2])):
            best = (device, fs_root, point)
    if best is None:
        return None
    rest = os.path.relpath(path, best[2])
    return best[0], os.path.normpath(os.path.join(best[1], rest)) if rest != "." else best[1]
